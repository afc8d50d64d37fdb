// Transcript <-> audio <-> timeline. Segment times are read once from data-s/data-e.
(() => {
  "use strict";
  const list = document.querySelector("ol.transcript");
  if (!list) return;
  const items = list.children;
  const starts = Array.from(items, (li) => +li.dataset.s);
  const ends = Array.from(items, (li) => +li.dataset.e);
  const audio = document.querySelector("audio");
  const svg = document.querySelector("svg.timeline");
  const playhead = svg && svg.querySelector(".playhead");
  let current = -1;
  let focused = 0;

  // The last segment that starts at or before t (-1 before the first).
  function indexAt(t) {
    let lo = 0, hi = starts.length - 1, found = -1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      if (starts[mid] <= t) { found = mid; lo = mid + 1; } else { hi = mid - 1; }
    }
    return found;
  }

  function focusItem(i) {
    if (i < 0 || i >= items.length) return;
    items[focused].tabIndex = -1;
    focused = i;
    items[i].tabIndex = 0;
    items[i].focus();
  }

  function mark(i) {
    if (i === current) return;
    if (current >= 0) { items[current].classList.remove("playing"); items[current].removeAttribute("aria-current"); }
    current = i;
    if (i >= 0) { items[i].classList.add("playing"); items[i].setAttribute("aria-current", "true"); }
  }

  function seek(t, i) {
    if (audio) {
      audio.currentTime = t;
      audio.play().catch(() => {});  // a browser that refuses to play still moves the position
    }
    mark(i);
    movePlayhead(t);
  }

  function movePlayhead(t) {
    if (!playhead) return;
    const x0 = +svg.dataset.x0, x1 = +svg.dataset.x1, end = +svg.dataset.end || 1;
    const x = x0 + (x1 - x0) * Math.min(Math.max(t / end, 0), 1);
    playhead.setAttribute("x1", x);
    playhead.setAttribute("x2", x);
    playhead.removeAttribute("visibility");
  }

  list.addEventListener("click", (event) => {
    const li = event.target.closest("li.seg");
    if (!li) return;
    const i = Array.prototype.indexOf.call(items, li);
    focusItem(i);
    seek(starts[i], i);
  });

  const moves = { ArrowDown: 1, j: 1, ArrowUp: -1, k: -1, PageDown: 10, PageUp: -10 };
  list.addEventListener("keydown", (event) => {
    if (event.altKey || event.ctrlKey || event.metaKey) return;
    const i = focused;
    if (event.key in moves) focusItem(Math.min(Math.max(i + moves[event.key], 0), items.length - 1));
    else if (event.key === "Home") focusItem(0);
    else if (event.key === "End") focusItem(items.length - 1);
    else if (event.key === "Enter" || event.key === " ") seek(starts[i], i);
    else if (event.key === "Escape" && audio) audio.pause();
    else return;
    event.preventDefault();
  });

  if (svg) {
    svg.addEventListener("click", (event) => {
      const point = new DOMPoint(event.clientX, event.clientY).matrixTransform(svg.getScreenCTM().inverse());
      const x0 = +svg.dataset.x0, x1 = +svg.dataset.x1;
      const t = Math.min(Math.max((point.x - x0) / (x1 - x0), 0), 1) * +svg.dataset.end;
      const i = Math.max(indexAt(t), 0);
      items[i].scrollIntoView({ block: "center" });
      focusItem(i);
      seek(audio ? t : starts[i], i);
    });
  }

  if (audio) {
    audio.addEventListener("timeupdate", () => {
      const t = audio.currentTime;
      const i = indexAt(t);
      mark(i >= 0 && t <= ends[i] ? i : -1);
      movePlayhead(t);
      if (current >= 0 && !audio.paused) {
        const box = items[current].getBoundingClientRect();
        if (box.top < 0 || box.bottom > window.innerHeight) items[current].scrollIntoView({ block: "center" });
      }
    });
  }
})();
