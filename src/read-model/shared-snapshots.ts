/**
 * One copy of each distinct runtime snapshot (`status.provisionedFrom`) across cached sessions.
 * Sessions provisioned from the same Challenge generation record equal snapshots (containers,
 * ports, flag policy, lifetimes), and every cached session held its own, which was then parsed
 * into a second copy (provisionedFromOf); at thousands of sessions they were the largest part of
 * the session cache. Cached objects are never mutated, so one object can be shared. Equal
 * snapshots are found by their JSON text; an entry goes away with the last session holding it.
 */
export class SharedSnapshots {
  private readonly byText = new Map<string, WeakRef<object>>();
  private readonly gone = new FinalizationRegistry<string>((text) => {
    if (this.byText.get(text)?.deref() === undefined) this.byText.delete(text);
  });

  /** Points a session that is about to be cached at the shared copy of its snapshot. */
  share(session: object): void {
    const status = (session as { status?: { provisionedFrom?: unknown } }).status;
    const snapshot = status?.provisionedFrom;
    if (!status || snapshot === null || typeof snapshot !== 'object') return;
    const text = JSON.stringify(snapshot);
    const shared = this.byText.get(text)?.deref();
    if (shared) {
      status.provisionedFrom = shared;
      return;
    }
    this.byText.set(text, new WeakRef(snapshot));
    this.gone.register(snapshot, text);
  }

  /** Distinct snapshots held (for tests). */
  get size(): number {
    return this.byText.size;
  }
}
