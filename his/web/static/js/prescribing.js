// The prescription builder: choosing a drug from the suggestions, adding lines.
(function () {
  function changed(el) {
    el.dispatchEvent(new Event("change", { bubbles: true }));
  }

  document.addEventListener("click", function (event) {
    var pick = event.target.closest(".pick-drug");
    if (pick) {
      var row = pick.dataset.row;
      var code = document.querySelector('[name="items-' + row + '-drug_code"]');
      var search = document.querySelector('[name="items-' + row + '-drug_search"]');
      var route = document.querySelector('[name="items-' + row + '-route"]');
      code.value = pick.dataset.code;
      search.value = pick.dataset.label;
      if (route && !route.value) { route.value = pick.dataset.route || ""; }
      document.getElementById("drug-options-" + row).innerHTML = "";
      var dose = document.querySelector('[name="items-' + row + '-dose"]');
      if (dose) { dose.focus(); }
      changed(code);
      return;
    }
    if (event.target.id === "rx-add-row") {
      var template = document.getElementById("rx-row-template");
      var rows = document.getElementById("rx-rows");
      var next = rows.querySelectorAll("tr.rx-row").length;
      var holder = document.createElement("tbody");
      holder.innerHTML = template.innerHTML.split("__i__").join(String(next));
      var added = holder.firstElementChild;
      rows.appendChild(added);
      if (window.htmx) { window.htmx.process(added); }
      added.querySelector(".drug-search").focus();
    }
  });

  // Typing a new name forgets the drug chosen before, so the line never keeps a stale code.
  document.addEventListener("input", function (event) {
    if (!event.target.classList.contains("drug-search")) { return; }
    var row = event.target.closest("tr.rx-row");
    if (!row) { return; }
    var code = row.querySelector('[name$="-drug_code"]');
    if (code && code.value) { code.value = ""; }
  });

  // Enter in the drug search picks the first suggestion instead of submitting the form.
  document.addEventListener("keydown", function (event) {
    if (event.key !== "Enter" || !event.target.classList.contains("drug-search")) { return; }
    var row = event.target.closest("tr.rx-row");
    var first = row && row.querySelector(".pick-drug");
    if (first) { event.preventDefault(); first.click(); }
  });
})();

// Once the form is being submitted, a check still waiting to fire would only race the save.
document.addEventListener("submit", function (event) {
  if (event.target.id === "rx-form") { event.target.dataset.submitting = "1"; }
});
document.addEventListener("htmx:beforeRequest", function (event) {
  var form = document.getElementById("rx-form");
  if (form && form.dataset.submitting && event.detail.elt === form) { event.preventDefault(); }
});
