import { describe, expect, it } from 'vitest';
import { createMetrics } from '../../src/metrics.js';

/** The gauges counted from the cache at scrape time: exact at each scrape, nothing left from the last. */
describe('gauges counted at scrape time', () => {
  it('count sessions by challenge and phase, pools by state, the queue by reason; and forget what went', async () => {
    const m = createMetrics();
    let sessions = [
      { challenge: 'web', phase: 'Running' },
      { challenge: 'web', phase: 'Running' },
      { challenge: 'pwn', phase: 'Queued' },
    ];
    m.setSessionSource(() => sessions);
    m.setPoolSource(() => [{ challenge: 'web', size: 5, ready: 3, starting: 1 }]);
    m.setQueueSource(() => [{ reason: 'EngineCapacity' }, { reason: 'EngineCapacity' }, { reason: 'ClusterFull' }]);
    const text = await m.registry.metrics();
    expect(text).toContain('challenge_engine_sessions{challenge="web",phase="Running"} 2');
    expect(text).toContain('challenge_engine_sessions{challenge="pwn",phase="Queued"} 1');
    expect(text).toContain('challenge_engine_pool_instances{challenge="web",state="target"} 5');
    expect(text).toContain('challenge_engine_pool_instances{challenge="web",state="ready"} 3');
    expect(text).toContain('challenge_engine_pool_instances{challenge="web",state="starting"} 1');
    expect(text).toContain('challenge_engine_sessions_queued{reason="EngineCapacity"} 2');
    expect(text).toContain('challenge_engine_sessions_queued{reason="ClusterFull"} 1');
    sessions = [{ challenge: 'web', phase: 'Failed' }];
    const later = await m.registry.getSingleMetricAsString('challenge_engine_sessions');
    expect(later).toContain('challenge_engine_sessions{challenge="web",phase="Failed"} 1');
    expect(later).not.toContain('phase="Running"');
    expect(later).not.toContain('challenge="pwn"');
  });

  it('report nothing before a source is set', async () => {
    const text = await createMetrics().registry.getSingleMetricAsString('challenge_engine_sessions_queued');
    expect(text).not.toMatch(/challenge_engine_sessions_queued\{/);
  });
});
