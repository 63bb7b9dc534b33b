// A print button on a printable page: <button type="button" data-print>. A file of its own
// because the Content-Security-Policy allows no inline script.
document.addEventListener("click", function (event) {
  if (event.target.closest("[data-print]")) {
    window.print();
  }
});
