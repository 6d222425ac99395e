// Forms with data-confirm ask before they submit (no inline handlers: the
// Content-Security-Policy allows scripts from this site's files only).
document.addEventListener("submit", function (event) {
  const question = event.target.dataset ? event.target.dataset.confirm : undefined;
  if (question && !window.confirm(question)) {
    event.preventDefault();
  }
});
