import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/core/config.js';

describe('media settings', () => {
  it('MCU_VIDEO_CODEC: unset or "offer" follows the offer, h264 or vp8 is preferred, anything else is refused by name', () => {
    expect(loadConfig({}).preferVideo).toBeUndefined();
    expect(loadConfig({ MCU_VIDEO_CODEC: 'offer' }).preferVideo).toBeUndefined();
    expect(loadConfig({ MCU_VIDEO_CODEC: 'h264' }).preferVideo).toBe('h264');
    expect(loadConfig({ MCU_VIDEO_CODEC: 'vp8' }).preferVideo).toBe('vp8');
    expect(() => loadConfig({ MCU_VIDEO_CODEC: 'av1' })).toThrow(/MCU_VIDEO_CODEC/);
  });

  it('MCU_MIX_SPEAKERS: 4 talkers by default, 0 mixes everyone, and a bad value is refused by name', () => {
    expect(loadConfig({}).mixSpeakers).toBe(4);
    expect(loadConfig({ MCU_MIX_SPEAKERS: '0' }).mixSpeakers).toBe(0);
    expect(() => loadConfig({ MCU_MIX_SPEAKERS: '-1' })).toThrow(/MCU_MIX_SPEAKERS/);
  });
});
