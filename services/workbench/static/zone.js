// Dates are rendered on the server: tell it the browser's time zone once (a cookie), and
// reload the page the first time so its dates are in that zone.
(function () {
  var zone = Intl.DateTimeFormat().resolvedOptions().timeZone;
  if (!zone) return;
  var current = document.cookie.split("; ").find(function (c) { return c.indexOf("rapport_tz=") === 0; });
  var value = encodeURIComponent(zone);
  if (current === "rapport_tz=" + value) return;
  document.cookie = "rapport_tz=" + value + "; path=/; max-age=31536000; samesite=strict";
  if (!current) window.location.reload();
})();
