import { dirname } from 'node:path';
import type { TestProject } from 'vitest/node';
import { readState, resumeComponent, stopCluster, type Component } from '../../scripts/lib/control-plane.js';

/**
 * Runs after test/support/global-setup.ts in the reliability project, so its teardown runs
 * before the cluster's. Fault tests restart control-plane components, which gives them new
 * pids that only state.json knows; the cluster's own teardown holds the pids from start-up.
 * This stops the control plane from a fresh read of state.json (keeping the directory for the
 * cluster's teardown, which then finds nothing left running and removes it).
 */
export default function setup(project: TestProject): () => Promise<void> {
  return async () => {
    if (process.env.TEST_USE_EXISTING_CLUSTER === '1') return;
    const kubeconfig = project.getProvidedContext().kubeconfig;
    if (!kubeconfig) return;
    const state = await readState(dirname(kubeconfig));
    if (!state) return;
    // A test that failed while a component was frozen must not leave it stopped forever.
    for (const name of Object.keys(state.pids) as Component[]) {
      try {
        resumeComponent(state, name);
      } catch {
        // not running
      }
    }
    await stopCluster(state, { keepDir: true });
  };
}
