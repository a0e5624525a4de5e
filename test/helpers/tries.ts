/**
 * Tests that judge real time at Chromium pages (frame gaps, decode rates, freezes) share a 2-core
 * machine with the server, the pages and the test itself. On CI that machine is shared with other
 * jobs as well: a page starved for a second freezes whatever the server does. Those tests get one
 * more try, as Playwright's own CI preset gives every browser test two, and each try is a fresh
 * call: a room of its own, and pages that are closed whatever happened.
 *
 * A failed first try is printed in full, so a run that passes on its second try still shows what
 * failed and by how much: the retry hides nothing from whoever reads the log, and a fault of the
 * server (which fails every try) still fails the run.
 */
export const ONE_MORE_TRY = { retry: 1 } as const;

let tries = 0;

/**
 * Runs one try of a test: `body` gets the try's number (for a room name of its own) and a list
 * to push clean-ups to, which run after it in reverse, passed or failed. A failed try also prints
 * what `explain` says (the server's own account, say).
 */
export async function oneTry(what: string, body: (n: number, cleanups: Array<() => unknown>) => Promise<void>, explain?: () => string): Promise<void> {
  const n = ++tries;
  const cleanups: Array<() => unknown> = [];
  try {
    await body(n, cleanups);
  } catch (e) {
    console.log(`TRY FAILED (${what}, try ${n}): ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`);
    if (explain) {
      const why = explain();
      console.log(why);
      // In the error too: a CI log may keep only its last lines, the failures' summary, and a
      // try that failed for a reason of the server's (a peer removed, a worker ended) must say so there.
      if (e instanceof Error) e.message += `\n${why}`;
    }
    throw e;
  } finally {
    for (const c of cleanups.reverse()) {
      try {
        await c();
      } catch (e) {
        console.log(`clean-up after try ${n} of ${what}: ${String(e)}`);
      }
    }
  }
}
