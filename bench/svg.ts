// The benchmark's chart, drawn by hand as SVG: offered rate (x, logarithmic) against achieved rate
// (upper panel, with the y = x line) and against failed calls in percent (lower panel), one
// colour per path; the highest zero-failure step of each path is ringed.

export interface ChartStep {
  readonly offered: number;
  readonly achieved: number;
  readonly failedPercent: number;
}

export interface ChartSeries {
  readonly name: string;
  readonly steps: readonly ChartStep[];
  readonly maxZeroFailure: number;
  /** No step failed: the real maximum is higher. */
  readonly capped: boolean;
}

const COLOURS = ['#1f77b4', '#d62728', '#2ca02c', '#9467bd', '#ff7f0e', '#8c564b'];

function esc(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

/** 1, 2, 5, 10, 20, 50 ... between lo and hi. */
function logTicks(lo: number, hi: number): number[] {
  const out: number[] = [];
  for (let decade = 10 ** Math.floor(Math.log10(lo)); decade <= hi; decade *= 10) {
    for (const m of [1, 2, 5]) {
      const v = m * decade;
      if (v >= lo && v <= hi) out.push(v);
    }
  }
  return out;
}

function niceMax(v: number): number {
  const p = 10 ** Math.floor(Math.log10(Math.max(1, v)));
  for (const m of [1, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

/** An SVG document (a string) for the rate search of every path. */
export function rateChart(series: readonly ChartSeries[], title: string): string {
  const W = 900;
  const left = 70;
  const right = 220;
  const top = 56;
  const upperH = 320;
  const gap = 50;
  const lowerH = 140;
  const bottom = 50;
  const H = top + upperH + gap + lowerH + bottom;
  const plotW = W - left - right;
  const all = series.flatMap((s) => s.steps);
  const xLo = Math.max(1, Math.min(...all.map((s) => s.offered), 100) * 0.8);
  const xHi = Math.max(...all.map((s) => s.offered), 200) * 1.2;
  const yHi = niceMax(Math.max(...all.map((s) => Math.max(s.offered, s.achieved)), 100));
  const x = (v: number): number => left + (plotW * (Math.log10(v) - Math.log10(xLo))) / (Math.log10(xHi) - Math.log10(xLo));
  const yU = (v: number): number => top + upperH - (upperH * v) / yHi;
  const lowerTop = top + upperH + gap;
  // Failed calls on a log-like scale, so 0.1% shows as well as 100%: log10(1 + 10 pct) / log10(1001).
  const yL = (pct: number): number => lowerTop + lowerH - (lowerH * Math.log10(1 + 10 * Math.min(100, Math.max(0, pct)))) / Math.log10(1001);
  const out: string[] = [];
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`);
  out.push(`<rect width="${W}" height="${H}" fill="white"/>`);
  out.push(`<text x="${left}" y="24" font-size="15" font-weight="bold">${esc(title)}</text>`);
  out.push(`<text x="${left}" y="40" fill="#555">upper: calls answered per second against the offered rate; lower: calls failed or left open (log scale)</text>`);
  // Axes and grid.
  for (const t of logTicks(xLo, xHi)) {
    out.push(`<line x1="${x(t).toFixed(1)}" y1="${top}" x2="${x(t).toFixed(1)}" y2="${top + upperH}" stroke="#eee"/>`);
    out.push(`<line x1="${x(t).toFixed(1)}" y1="${lowerTop}" x2="${x(t).toFixed(1)}" y2="${lowerTop + lowerH}" stroke="#eee"/>`);
    out.push(`<text x="${x(t).toFixed(1)}" y="${lowerTop + lowerH + 16}" text-anchor="middle">${t}</text>`);
  }
  for (let i = 0; i <= 5; i++) {
    const v = (yHi * i) / 5;
    out.push(`<line x1="${left}" y1="${yU(v).toFixed(1)}" x2="${left + plotW}" y2="${yU(v).toFixed(1)}" stroke="#eee"/>`);
    out.push(`<text x="${left - 6}" y="${(yU(v) + 4).toFixed(1)}" text-anchor="end">${Math.round(v)}</text>`);
  }
  for (const pct of [0, 0.1, 1, 10, 100]) {
    out.push(`<line x1="${left}" y1="${yL(pct).toFixed(1)}" x2="${left + plotW}" y2="${yL(pct).toFixed(1)}" stroke="#eee"/>`);
    out.push(`<text x="${left - 6}" y="${(yL(pct) + 4).toFixed(1)}" text-anchor="end">${pct}%</text>`);
  }
  out.push(`<rect x="${left}" y="${top}" width="${plotW}" height="${upperH}" fill="none" stroke="#333"/>`);
  out.push(`<rect x="${left}" y="${lowerTop}" width="${plotW}" height="${lowerH}" fill="none" stroke="#333"/>`);
  // y = x (every offered call answered in time): a curve on a log-x, linear-y plot.
  const diag: string[] = [];
  for (let k = 0; k <= 60; k++) {
    const v = xLo * (Math.min(xHi, yHi) / xLo) ** (k / 60);
    diag.push(`${k ? 'L' : 'M'}${x(v).toFixed(1)} ${yU(v).toFixed(1)}`);
  }
  out.push(`<path d="${diag.join(' ')}" fill="none" stroke="#999" stroke-dasharray="4 4"/>`);
  out.push(`<text x="${left + plotW / 2}" y="${H - 12}" text-anchor="middle">offered rate (calls/s, log scale)</text>`);
  out.push(`<text transform="translate(18 ${top + upperH / 2}) rotate(-90)" text-anchor="middle">calls answered per second</text>`);
  out.push(`<text transform="translate(18 ${lowerTop + lowerH / 2}) rotate(-90)" text-anchor="middle">failed calls</text>`);
  // Series.
  series.forEach((s, i) => {
    const colour = COLOURS[i % COLOURS.length] as string;
    const steps = [...s.steps].sort((a, b) => a.offered - b.offered);
    if (steps.length === 0) return;
    const line = (pts: Array<[number, number]>): string => pts.map(([px, py], k) => `${k ? 'L' : 'M'}${px.toFixed(1)} ${py.toFixed(1)}`).join(' ');
    out.push(`<path d="${line(steps.map((st) => [x(st.offered), yU(st.achieved)]))}" fill="none" stroke="${colour}" stroke-width="2"/>`);
    out.push(`<path d="${line(steps.map((st) => [x(st.offered), yL(st.failedPercent)]))}" fill="none" stroke="${colour}" stroke-width="2"/>`);
    for (const st of steps) {
      const px = x(st.offered);
      const failedMark = st.failedPercent > 0;
      const title = `<title>${esc(s.name)}: offered ${st.offered}/s, achieved ${st.achieved.toFixed(0)}/s, failed ${st.failedPercent.toFixed(2)}%</title>`;
      if (failedMark) {
        const py = yU(st.achieved);
        out.push(`<path d="M${(px - 5).toFixed(1)} ${(py - 5).toFixed(1)} L${(px + 5).toFixed(1)} ${(py + 5).toFixed(1)} M${(px - 5).toFixed(1)} ${(py + 5).toFixed(1)} L${(px + 5).toFixed(1)} ${(py - 5).toFixed(1)}" stroke="${colour}" stroke-width="2">${title}</path>`);
      } else {
        out.push(`<circle cx="${px.toFixed(1)}" cy="${yU(st.achieved).toFixed(1)}" r="3.5" fill="${colour}">${title}</circle>`);
      }
      out.push(`<circle cx="${px.toFixed(1)}" cy="${yL(st.failedPercent).toFixed(1)}" r="3" fill="${colour}">${title}</circle>`);
      if (st.offered === s.maxZeroFailure) out.push(`<circle cx="${px.toFixed(1)}" cy="${yU(st.achieved).toFixed(1)}" r="8" fill="none" stroke="${colour}" stroke-width="1.5"/>`);
    }
    const ly = top + 10 + i * 40;
    out.push(`<rect x="${left + plotW + 15}" y="${ly}" width="14" height="14" fill="${colour}"/>`);
    out.push(`<text x="${left + plotW + 35}" y="${ly + 11}">${esc(s.name)}</text>`);
    out.push(`<text x="${left + plotW + 35}" y="${ly + 27}" fill="#555">${s.capped ? '>= ' : ''}${s.maxZeroFailure} calls/s, 0 failed</text>`);
  });
  const ly = top + 10 + series.length * 40 + 10;
  out.push(`<text x="${left + plotW + 15}" y="${ly}" fill="#555">o clean step, x failures</text>`);
  out.push(`<text x="${left + plotW + 15}" y="${ly + 16}" fill="#555">ringed: highest clean step</text>`);
  out.push(`<text x="${left + plotW + 15}" y="${ly + 32}" fill="#555">dashed: answered = offered</text>`);
  out.push('</svg>');
  return `${out.join('\n')}\n`;
}
