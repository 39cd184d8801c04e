/**
 * The V8 flags the engine ships with (the image's command, `npm start`) and the benchmarks run it
 * with, so what is measured is what runs. A unit test checks every place that starts the engine.
 *
 * - `--max-semi-space-size=8`: a young generation of at most 2 x 8 MB instead of 2 x 16 MB.
 *   The engine's garbage is short-lived (requests, watch events, list pages); the bigger space
 *   only held more of it resident. 4 MB held no less at 10,000 sessions (209 against 205 MB)
 *   and cost flag checks 10-15 % of their throughput in scavenges (finding 16).
 * - `--heap-growing-percent=20`: the old generation may grow to 1.2 x what the last full
 *   collection kept before the next one, instead of V8's up-to-4 x for a process whose
 *   collections are fast. The cached sessions are almost all of it and change slowly.
 *
 * Measured at 2,000 and 10,000 sessions in docs/benchmarks.md ("Memory: V8's heap sizing").
 * Source maps are not enabled: `--enable-source-maps` loads the map of every module, the
 * client library's 967 included (8.6 MB more heap, 7-12 MB more RSS, on loading the client
 * alone); stack traces point at dist/, which tsc emits line for line from src/. A later flag
 * wins, so `--max-semi-space-size=0 --heap-growing-percent=0` after these means V8's defaults.
 */
export const ENGINE_NODE_FLAGS = ['--max-semi-space-size=8', '--heap-growing-percent=20'] as const;

/**
 * The environment the engine ships with, beside the flags (the image's ENV, one variable a line;
 * the image built without Docker; `npm start`; the benchmarks' engine; the same unit test checks
 * them).
 *
 * - `MALLOC_ARENA_MAX=2`: glibc gives each thread that allocates under contention its own malloc
 *   arena, up to 8 per core, and freed memory stays in the arena it came from. Node's threads
 *   (libuv's pool, V8's platform workers) allocate off the V8 heap (TLS, zlib, buffers), so the
 *   arenas held resident memory the engine no longer used. At 2,000 sessions: RSS median 155 ->
 *   146 MB, idle 143-144 -> 135-137 MB, after a restart 166-167 -> 155-163 MB (three idle
 *   windows and three restarts each, back to back), resync unchanged. musl ignores it.
 */
export const ENGINE_ENV = { MALLOC_ARENA_MAX: '2' } as const;
