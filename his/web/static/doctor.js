// After a refused form the page comes back from the top: bring the first wrong field into
// view and put the cursor in it, so the doctor does not have to hunt for the message.
document.addEventListener("DOMContentLoaded", function () {
  var field = document.querySelector(
    ".field.invalid input, .field.invalid textarea, .field.invalid select"
  );
  var target = field || document.querySelector(".card .field-error");
  if (!target) {
    return;
  }
  var details = target.closest("details");
  if (details) {
    details.open = true;
  }
  target.scrollIntoView({ block: "center" });
  if (field) {
    field.focus({ preventScroll: true });
  }
});
