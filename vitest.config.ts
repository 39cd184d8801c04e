import { defineConfig } from 'vitest/config';

// The real-node end-to-end project needs root and starts its own control plane plus a real node
// (containerd, kubelet, kube-proxy, kube-router); see docs/real-node.md. It is left out only when
// the suite runs against an existing cluster, or when TEST_REAL_NODE=0 says so explicitly.
const realNode = process.env.TEST_REAL_NODE !== '0' && process.env.TEST_USE_EXISTING_CLUSTER !== '1';

// Unit tests need no cluster; integration tests share one local control plane started once per
// run by the global setup, and each test file gets its own namespace; reliability tests inject
// faults (kill -9, apiserver and etcd restarts, frozen watches) into a control plane of their
// own, one file at a time (test/reliability/global-teardown.ts stops what they restarted).
export default defineConfig({
  test: {
    projects: [
      {
        test: {
          name: 'unit',
          include: ['test/unit/**/*.test.ts'],
          environment: 'node',
        },
      },
      {
        test: {
          name: 'integration',
          include: ['test/integration/**/*.test.ts'],
          environment: 'node',
          globalSetup: ['test/support/global-setup.ts'],
          testTimeout: 60_000,
          hookTimeout: 120_000,
          fileParallelism: false,
        },
      },
      {
        test: {
          name: 'reliability',
          include: ['test/reliability/**/*.test.ts'],
          environment: 'node',
          globalSetup: ['test/support/global-setup.ts', 'test/reliability/global-teardown.ts'],
          testTimeout: 180_000,
          hookTimeout: 180_000,
          fileParallelism: false,
        },
      },
      ...(realNode
        ? [
            {
              test: {
                name: 'e2e',
                include: ['test/e2e/**/*.e2e.ts'],
                environment: 'node' as const,
                globalSetup: ['test/e2e/real-node-setup.ts'],
                testTimeout: 180_000,
                hookTimeout: 600_000,
                fileParallelism: false,
              },
            },
          ]
        : []),
    ],
  },
});
