// The print button of the Mẫu số 01 page (a file, not inline, because the page's CSP forbids inline scripts).
document.addEventListener("DOMContentLoaded", function () {
  var button = document.getElementById("print");
  if (button) button.addEventListener("click", function () { window.print(); });
});
