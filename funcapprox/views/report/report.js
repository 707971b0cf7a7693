(function () {
  "use strict";
  var svg = document.getElementById("pc-svg");
  var source = document.getElementById("pc-data");
  if (!svg || !source) { return; }
  var data = JSON.parse(source.textContent);
  var NS = svg.namespaceURI;  // the SVG namespace, as the HTML parser set it
  var W = 1000, H = 460, TOP = 56, BOTTOM = H - 24, PAD = 95;
  var order = data.axes.map(function (axis, i) { return i; });
  var initial = order.slice();
  var drag = null;    // {axis, x} while an axis is being moved
  var picked = null;  // {axis, label}: the value whose trials stand out
  var status = document.getElementById("pc-status");
  var hint = "Drag an axis by its name to reorder; click a value to pick out its trials.";

  function make(name, attrs, parent) {
    var node = document.createElementNS(NS, name);
    Object.keys(attrs).forEach(function (key) { node.setAttribute(key, attrs[key]); });
    parent.appendChild(node);
    return node;
  }
  function slotX(slot) {
    var n = order.length;
    return n < 2 ? W / 2 : PAD + slot * (W - 2 * PAD) / (n - 1);
  }
  function axisX(a) { return drag && drag.axis === a ? drag.x : slotX(order.indexOf(a)); }
  function y(t) { return BOTTOM - t * (BOTTOM - TOP); }
  function chosen(line) { return !picked || line.text[picked.axis] === picked.label; }

  function render() {
    while (svg.firstChild) { svg.removeChild(svg.firstChild); }
    var group = make("g", {"class": "pc-lines"}, svg);
    var lines = data.lines.filter(function (l) { return !chosen(l); })
      .concat(data.lines.filter(chosen));  // picked lines on top
    lines.forEach(function (line) {
      var d = order.map(function (a, k) {
        return (k ? "L" : "M") + axisX(a).toFixed(1) + "," + y(line.pos[a]).toFixed(1);
      }).join(" ");
      var cls = "pc-line" + (line.best ? " pc-best" : "") + (chosen(line) ? "" : " pc-dim");
      var path = make("path", {"d": d, "stroke": line.color, "class": cls, "data-trial": line.id}, group);
      make("title", {}, path).textContent = line.tip;
    });
    order.forEach(drawAxis);
    svg.setAttribute("data-order", order.map(function (a) { return data.axes[a].name; }).join(","));
  }

  function drawAxis(a) {
    var axis = data.axes[a];
    var cls = "pc-axis" + (drag && drag.axis === a ? " pc-dragging" : "");
    var g = make("g", {"class": cls, "data-axis": axis.name, "transform": "translate(" + axisX(a).toFixed(1) + ",0)"},
                 svg);
    make("line", {"x1": 0, "x2": 0, "y1": TOP, "y2": BOTTOM}, g);
    axis.ticks.forEach(function (tick) {
      var ty = y(tick.at).toFixed(1);
      make("line", {"x1": -4, "x2": 0, "y1": ty, "y2": ty}, g);
      var on = picked && picked.axis === a && picked.label === tick.label;
      var text = make("text", {"x": -7, "y": ty, "dy": "0.32em", "text-anchor": "end",
                               "class": "pc-tick" + (tick.pick ? " pc-pick" : "") + (on ? " pc-on" : "")}, g);
      text.textContent = tick.label;
      if (tick.pick) { text.addEventListener("click", function () { pick(a, tick.label); }); }
    });
    var grip = make("rect", {"x": -48, "y": TOP - 42, "width": 96, "height": 30, "class": "pc-grip"}, g);
    var title = make("text", {"x": 0, "y": TOP - 22, "text-anchor": "middle", "class": "pc-title"}, g);
    title.textContent = axis.title;
    make("title", {}, grip).textContent = "drag to move the " + axis.name + " axis";
    [grip, title].forEach(function (node) {
      node.addEventListener("pointerdown", function (ev) { startDrag(ev, a); });
    });
  }

  function svgX(ev) {
    return new DOMPoint(ev.clientX, ev.clientY).matrixTransform(svg.getScreenCTM().inverse()).x;
  }
  function startDrag(ev, a) {
    ev.preventDefault();
    drag = {axis: a, x: axisX(a)};
    window.addEventListener("pointermove", moveDrag);
    window.addEventListener("pointerup", endDrag);
    window.addEventListener("pointercancel", endDrag);
    render();
  }
  function moveDrag(ev) {
    if (!drag) { return; }
    drag.x = Math.max(PAD - 50, Math.min(W - PAD + 50, svgX(ev)));
    order = order.slice().sort(function (p, q) { return axisX(p) - axisX(q); });
    render();
  }
  function endDrag() {
    drag = null;
    window.removeEventListener("pointermove", moveDrag);
    window.removeEventListener("pointerup", endDrag);
    window.removeEventListener("pointercancel", endDrag);
    render();
  }

  function pick(a, label) {
    var same = picked && picked.axis === a && picked.label === label;
    picked = same ? null : {axis: a, label: label};
    render();
    describe();
  }
  function describe() {
    if (!status) { return; }
    if (!picked) { status.textContent = hint; return; }
    var metrics = data.lines.filter(chosen).map(function (l) { return l.metric; })
      .sort(function (p, q) { return p - q; });
    var n = metrics.length;
    var text = data.axes[picked.axis].name + " = " + picked.label + ": ";
    if (!n) {
      text += "no succeeded trial.";
    } else {
      var median = n % 2 ? metrics[(n - 1) / 2] : (metrics[n / 2 - 1] + metrics[n / 2]) / 2;
      text += n + " succeeded trial" + (n > 1 ? "s" : "") + ", metric median " + median.toFixed(3) +
        ", best " + metrics[n - 1].toFixed(3) + ", worst " + metrics[0].toFixed(3) + ". Click it again to clear.";
    }
    status.textContent = text;
  }

  document.getElementById("pc-reset").addEventListener("click", function () {
    order = initial.slice();
    picked = null;
    render();
    describe();
  });
  render();
  describe();
})();
