// Marks the shown messages read once the page is actually in front of someone: a link
// preview fetches the page but neither runs this nor shows it.
(function () {
  "use strict";
  var form = document.getElementById("mark-read");
  if (!form) {
    return;
  }
  var sent = false;
  function markRead() {
    if (sent || document.visibilityState !== "visible") {
      return;
    }
    sent = true;
    fetch(form.action, { method: "POST", body: new FormData(form), credentials: "omit" })
      .then(function (response) {
        if (response.ok) {
          form.hidden = true;
        }
      })
      .catch(function () {
        sent = false; // offline: the button still works, and the next visit tries again
      });
  }
  document.addEventListener("visibilitychange", markRead);
  window.setTimeout(markRead, 1500);
})();
