/* hipsml SOM explorer: draws window.HIPSML_EXPLORER (written by hipsml.train.som._explorer into data.js).
   Every value from the data is inserted as text (textContent), never as HTML. */
(function () {
  "use strict";
  var data = window.HIPSML_EXPLORER;
  if (!data) { document.body.textContent = "data.js is missing: write this folder again with 'hipsml som explore'."; return; }
  var HEX_HEIGHT = 2 / Math.sqrt(3);  // pointy-top hexagon of unit width, as in the PNG pictures

  function el(tag, attrs, text) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (key) { node.setAttribute(key, attrs[key]); });
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function fmt(value, digits) { return Number(value).toPrecision(digits); }

  document.getElementById("title").textContent = data.title;
  document.getElementById("summary").textContent = data.summary;

  // the map: one absolutely positioned cell per neuron, at the centres of the PNG pictures
  var map = document.getElementById("map");
  var xs = data.neurons.map(function (n) { return n.x; });
  var ys = data.neurons.map(function (n) { return n.y; });
  var minX = Math.min.apply(null, xs), maxX = Math.max.apply(null, xs);
  var minY = Math.min.apply(null, ys), maxY = Math.max.apply(null, ys);
  var hex = data.som.layout === "hexagonal";
  var size = Math.max(28, Math.min(88, Math.floor(620 / (maxX - minX + 1))));
  var cellW = size, cellH = hex ? size * HEX_HEIGHT : size;
  map.style.width = ((maxX - minX + 1) * size) + "px";
  map.style.height = ((maxY - minY) * size + cellH) + "px";
  var cells = {};
  data.neurons.forEach(function (neuron) {
    var cell = el("div", {"class": "cell " + data.som.layout, "data-neuron": neuron.neuron, "role": "gridcell",
                          "title": "neuron " + neuron.neuron + ": " + neuron.hits + " cutouts"});
    cell.style.width = cellW + "px";
    cell.style.height = cellH + "px";
    cell.style.left = ((neuron.x - minX) * size) + "px";
    cell.style.top = ((maxY - neuron.y) * size) + "px";
    cell.style.backgroundColor = "#000";
    cell.appendChild(el("img", {src: neuron.image, alt: "prototype " + neuron.neuron}));
    cell.appendChild(el("span", {"class": "hits"}, neuron.hits));
    cell.addEventListener("click", function () { select(neuron.neuron); });
    map.appendChild(cell);
    cells[neuron.neuron] = cell;
  });

  // the hit-count heat map toggle
  var toggle = document.getElementById("heatmap-toggle");
  var legend = document.getElementById("legend");
  toggle.addEventListener("click", function () {
    var on = !map.classList.contains("heat");
    map.classList.toggle("heat", on);
    toggle.setAttribute("aria-pressed", on ? "true" : "false");
    toggle.textContent = on ? "Show prototypes" : "Show hit counts";
    data.neurons.forEach(function (neuron) {
      cells[neuron.neuron].style.backgroundColor = on ? neuron.heat : "#000";
    });
    legend.hidden = !on;
    legend.textContent = "cutouts per neuron: 0 (dark) to " + data.max_hits + " (bright)";
  });

  function card(index, extra) {
    var c = data.cutouts[index];
    var node = el("div", {"class": "card", "data-row": c.row});
    node.appendChild(el("img", {src: c.image, alt: "cutout " + c.id}));
    var dl = el("dl");
    var fields = extra.concat([
      ["id", c.id, "id"], ["ra", fmt(c.ra, 9), "ra"], ["dec", fmt(c.dec, 9), "dec"],
      ["label", c.label === null ? "-" : c.label, "label"], ["distance", fmt(c.distance, 5), "distance"],
      ["angle", c.angle + "\u00b0" + (c.flipped ? ", flipped" : ""), "transform"], ["neuron", c.bmu, "neuron"]
    ]);
    fields.forEach(function (f) {
      dl.appendChild(el("dt", {}, f[0]));
      dl.appendChild(el("dd", {"class": f[2]}, f[1]));
    });
    var dd = el("dd", {"class": "fits"});
    dd.appendChild(el("a", {href: c.fits, download: ""}, "FITS"));
    dl.appendChild(el("dt", {}, "cutout"));
    dl.appendChild(dd);
    node.appendChild(dl);
    return node;
  }

  // the gallery: the k cutouts of the selected neuron, nearest first
  var gallery = document.getElementById("gallery");
  var galleryTitle = document.getElementById("gallery-title");
  function select(index) {
    Object.keys(cells).forEach(function (key) { cells[key].classList.remove("selected"); });
    cells[index].classList.add("selected");
    var neuron = data.neurons[index];
    galleryTitle.textContent = "Neuron " + index + ": " + neuron.hits + (neuron.hits === 1 ? " cutout" : " cutouts") +
      (neuron.members.length < neuron.hits ? ", the " + neuron.members.length + " nearest" : "");
    gallery.textContent = "";
    neuron.members.forEach(function (member, rank) {
      gallery.appendChild(card(member, [["rank", rank + 1, "rank"]]));
    });
    if (!neuron.members.length) gallery.appendChild(el("p", {"class": "empty"}, "No cutout has this neuron as its best match."));
  }

  // the outliers: largest distance to the best-matching prototype first
  document.getElementById("outlier-title").textContent =
    "The " + data.outliers.length + " cutouts farthest from their prototypes (click one to select its neuron)";
  var outliers = document.getElementById("outliers");
  data.outliers.forEach(function (member, rank) {
    var node = card(member, [["rank", rank + 1, "rank"]]);
    node.addEventListener("click", function (event) {
      if (event.target.tagName !== "A") select(data.cutouts[member].bmu);
    });
    outliers.appendChild(node);
  });
}());
