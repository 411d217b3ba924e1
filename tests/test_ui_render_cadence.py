"""The page's render loop under a burst: more than 100 events a frame are laid out every other
frame (the renderer's layout and paint are most of the page's cost then, taken from the app's own
processes on a machine of few cores), a steady stream every frame, and nothing is lost either way.
Events are fed through the page's own entry point for the bridge's `gateway-event`, one batch per
animation frame, so the rate per frame is exact whatever the machine's load."""

from __future__ import annotations

from playwright.sync_api import Page

FRAMES = 40

FEED = """async ([perFrame, frames]) => {
  const d = window.__dim;
  const sid = "cadence";
  const before = d.ui.frames;
  let seq = d.store.chats.get(sid)?.lastSeq ?? 0;
  if (!seq) {
    d.applyEvent({ type: "turn_started", sessionId: sid, seq: ++seq, turnId: "t", text: "go" });
  }
  let ticks = 0;
  await new Promise((done) => {
    const tick = () => {
      for (let i = 0; i < perFrame; i += 1) {
        d.applyEvent({ type: "text_delta", sessionId: sid, seq: ++seq, turnId: "t", text: "x" });
      }
      ticks += 1;
      if (ticks < frames) requestAnimationFrame(tick);
      else done();
    };
    requestAnimationFrame(tick);
  });
  // the last batch laid out too
  const frame = () => new Promise((done) => requestAnimationFrame(done));
  await frame();
  await frame();
  await frame();
  const text = d.store.chats.get(sid).turns.get("t").text.length;
  return { flushes: d.ui.frames - before, ticks, text };
}"""


def feed(page: Page, per_frame: int) -> dict:
    return page.evaluate(FEED, [per_frame, FRAMES])


def test_a_burst_is_laid_out_every_other_frame_a_steady_stream_every_frame(page: Page):
    page.wait_for_selector("body[data-ready='1']")
    steady = feed(page, 10)
    # one flush a frame (a frame or two of slack for the start and the end)
    assert steady["flushes"] >= FRAMES - 4, steady
    burst = feed(page, 500)
    assert burst["flushes"] <= FRAMES // 2 + 4, burst
    assert burst["flushes"] >= FRAMES // 4, burst
    # nothing lost: every delta of both is in the turn's text
    assert burst["text"] == FRAMES * 10 + FRAMES * 500
    # back to every frame once the burst is over
    after = feed(page, 10)
    assert after["flushes"] >= FRAMES - 4, after
