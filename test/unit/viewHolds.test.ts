import { describe, expect, it } from 'vitest';
import { ViewHolds } from '../../src/room/viewHolds.js';

const held = (h: ViewHolds) => [...h.held].sort();

/** A viewer with A on screen and B pending, both answered by its worker. */
function showingAWaitingB(): ViewHolds {
  const h = new ViewHolds();
  h.point('A');
  h.answered({ shown: 'A' });
  h.point('B');
  h.answered({ shown: 'A', pending: 'B' });
  return h;
}

describe('ViewHolds: which composites a viewer keeps running', () => {
  it('shows the first view at once, and holds it', () => {
    const h = new ViewHolds();
    expect(h.point('A')).toEqual({ send: true, hold: true });
    expect(h.shown).toBe('A');
    expect(h.switched('A')).toEqual([]);
    expect(h.answered({ shown: 'A' })).toEqual([]);
    expect(held(h)).toEqual(['A']);
    // Pointed at the same view again: nothing to send.
    expect(h.point('A')).toEqual({ send: false, hold: false });
  });

  it('lets go of the old view once the worker switched to the new one', () => {
    const h = new ViewHolds();
    h.point('A');
    h.answered({ shown: 'A' });
    expect(h.point('B')).toEqual({ send: true, hold: true });
    expect(h.pending).toBe('B');
    expect(h.answered({ shown: 'A', pending: 'B' })).toEqual([]);
    expect(h.switched('B')).toEqual(['A']);
    expect(held(h)).toEqual(['B']);
  });

  it('keeps a replaced pending view until the answer says the worker did not switch to it', () => {
    const h = showingAWaitingB();
    h.point('C');
    expect(held(h)).toEqual(['A', 'B', 'C']);
    expect(h.answered({ shown: 'A', pending: 'C' })).toEqual(['B']);
    expect(held(h)).toEqual(['A', 'C']);
  });

  it('the race: the worker switched to the pending view while the request replacing it was on its way', () => {
    const h = showingAWaitingB();
    h.point('C');
    // The worker's peer.switched for B crosses the follow request for C: nothing is let go yet.
    expect(h.switched('B')).toEqual([]);
    // The answer: B on screen, C pending. A goes; B, which the viewer sees, stays.
    expect(h.answered({ shown: 'B', pending: 'C' })).toEqual(['A']);
    expect(held(h)).toEqual(['B', 'C']);
    expect(h.shown).toBe('B');
    expect(h.pending).toBe('C');
  });

  it('back to the view on screen: the pending one goes, unless the worker had switched to it', () => {
    const calm = showingAWaitingB();
    expect(calm.point('A')).toEqual({ send: true, hold: false });
    expect(calm.answered({ shown: 'A' })).toEqual(['B']);
    expect(held(calm)).toEqual(['A']);

    const raced = showingAWaitingB();
    raced.point('A');
    raced.switched('B');
    // The worker shows B and now waits for A again: both keep running.
    expect(raced.answered({ shown: 'B', pending: 'A' })).toEqual([]);
    expect(held(raced)).toEqual(['A', 'B']);
  });

  it('with two requests on their way, only the last answer counts', () => {
    const h = new ViewHolds();
    h.point('A');
    h.answered({ shown: 'A' });
    h.point('B');
    h.point('C');
    expect(h.answered({ shown: 'A', pending: 'B' })).toEqual([]);
    expect(h.pending).toBe('C');
    expect(h.answered({ shown: 'A', pending: 'C' })).toEqual(['B']);
  });

  it('a worker that could not be asked: the room goes by what it knows', () => {
    const h = showingAWaitingB();
    h.point('C');
    expect(h.answered(undefined)).toEqual(['B']);
    expect(held(h)).toEqual(['A', 'C']);
  });

  it('a failed view is forgotten, and a leave lets go of everything', () => {
    const h = new ViewHolds();
    h.point('A');
    h.answered({ shown: 'A' });
    h.point('B');
    h.forget('A');
    expect(h.shown).toBeUndefined();
    expect(held(h)).toEqual(['B']);
    expect(h.releaseAll()).toEqual(['B']);
    expect(held(h)).toEqual([]);
    // An answer that comes after the leave lets go of nothing more.
    expect(h.answered({ shown: 'B' })).toEqual([]);
  });
});
