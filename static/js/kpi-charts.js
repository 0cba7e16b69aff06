// Draws the buyer's KPI charts from the JSON in #kpi-charts[data-charts]
// (a static file: the CSP forbids inline script). Money arrives in minor units.
window.addEventListener("DOMContentLoaded", function () {
  var box = document.getElementById("kpi-charts");
  if (!box || !window.Chart) { return; }
  var data = JSON.parse(box.dataset.charts);
  var currency = box.dataset.currency || "";
  // The page's own locale (the server's, from the reader's browser), as its tables.
  var locale = box.dataset.locale || undefined;
  var money = function (minor) {
    return minor === null ? "—" : (minor / 100).toLocaleString(locale, { style: "currency", currency: currency });
  };
  var percents = new Intl.NumberFormat(locale, { style: "percent", minimumFractionDigits: 1, maximumFractionDigits: 1 });
  var percent = function (fraction) {
    return fraction === null ? "—" : percents.format(fraction);
  };
  var count = function (n) { return n.toLocaleString(locale); };
  // Days arrive as UTC dates ("2026-12-05"), shown as the locale writes a day.
  var days = new Intl.DateTimeFormat(locale, { day: "numeric", month: "short", timeZone: "UTC" });
  var day = function (iso) { return days.format(new Date(iso + "T00:00:00Z")); };
  // Ticks fall on whole minor units, and an empty or tiny chart still spans one major
  // unit: Chart.js would otherwise divide 0–1 minor unit into tenths, all shown alike.
  var moneyAxis = { beginAtZero: true, suggestedMax: 100,
                    ticks: { precision: 0, callback: function (v) { return money(v); } } };
  var tooltip = function (format) {
    return { callbacks: { label: function (ctx) { return ctx.dataset.label + ": " + format(ctx.parsed.y); } } };
  };
  var draw = function (id, config) {
    var canvas = document.getElementById(id);
    config.options = Object.assign({ responsive: true, maintainAspectRatio: false, animation: false }, config.options || {});
    return new window.Chart(canvas, config);
  };

  draw("chart-daily", {
    data: {
      labels: data.days.map(day),
      datasets: [
        { type: "bar", label: "Leads", data: data.leads, yAxisID: "leads", backgroundColor: "#9ec5fe" },
        { type: "line", label: "Spend", data: data.spend, yAxisID: "spend", borderColor: "#0d6efd", pointRadius: 2 }
      ]
    },
    options: {
      scales: { leads: { position: "left", beginAtZero: true, ticks: { precision: 0 } },
                spend: Object.assign({ position: "right", grid: { drawOnChartArea: false } }, moneyAxis) },
      plugins: { tooltip: { callbacks: { label: function (ctx) {
        return ctx.dataset.label + ": " + (ctx.dataset.yAxisID === "spend" ? money(ctx.parsed.y) : count(ctx.parsed.y));
      } } } }
    }
  });
  draw("chart-regions", {
    type: "bar",
    data: { labels: data.regions, datasets: [
      { label: "You paid (average)", data: data.your_price, backgroundColor: "#0d6efd" },
      { label: "Market clearing price (average)", data: data.market_price, backgroundColor: "#adb5bd" }
    ] },
    options: { scales: { y: moneyAxis }, plugins: { tooltip: tooltip(money) } }
  });
  draw("chart-cpl", {
    type: "bar",
    data: { labels: data.orders, datasets: [{ label: "Cost per lead", data: data.cpl, backgroundColor: "#6f42c1" }] },
    options: { scales: { y: moneyAxis }, plugins: { legend: { display: false }, tooltip: tooltip(money) } }
  });
  draw("chart-cr", {
    type: "bar",
    data: { labels: data.orders, datasets: [{ label: "Conversion rate", data: data.conversion_rate, backgroundColor: "#198754" }] },
    options: { scales: { y: { beginAtZero: true, ticks: { callback: function (v) { return percent(v); } } } },
               plugins: { legend: { display: false }, tooltip: tooltip(percent) } }
  });
});
