// Redraws the throughput chart from the dashboard's JSON every 2 seconds.
(function () {
  const svg = document.getElementById("throughput");
  if (!svg) return;
  const WINDOW_MS = 300000, W = 600, H = 160;
  const now = document.getElementById("throughput-now");
  function line(points, key, top, end) {
    const bySecond = new Map(points.map(p => [p.at, p[key]]));
    const out = [];
    for (let at = end - WINDOW_MS; at <= end; at += 1000) {
      const x = ((at - (end - WINDOW_MS)) / WINDOW_MS) * W;
      const y = H - ((bySecond.get(at) || 0) / top) * (H - 10);
      out.push(x.toFixed(1) + "," + y.toFixed(1));
    }
    return out.join(" ");
  }
  async function draw() {
    try {
      const r = await fetch(svg.dataset.src, { credentials: "same-origin" });
      if (!r.ok) return;
      const data = await r.json();
      const end = Math.floor(Date.now() / 1000) * 1000 - 1000;
      const top = Math.max(1, ...data.points.map(p => Math.max(p.success, p.failure)));
      svg.querySelector(".success").setAttribute("points", line(data.points, "success", top, end));
      svg.querySelector(".failure").setAttribute("points", line(data.points, "failure", top, end));
      const last = data.points.filter(p => p.at >= end - 5000);
      const ok = last.reduce((n, p) => n + p.success, 0) / 5, bad = last.reduce((n, p) => n + p.failure, 0) / 5;
      now.textContent = "· now " + ok.toFixed(1) + "/s succeeded, " + bad.toFixed(1) + "/s failed · drawn " + new Date().toLocaleTimeString();
      svg.dataset.drawn = String(Date.now());
    } catch (e) { /* the next tick tries again */ }
  }
  draw();
  setInterval(draw, 2000);
})();
