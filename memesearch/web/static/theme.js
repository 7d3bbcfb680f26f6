// Runs before the page paints: apply the remembered theme (else the system's) with no flash.
(function () {
  var stored = null;
  try { stored = localStorage.getItem("memesearch-theme"); } catch (e) {}
  if (stored === "dark" || stored === "light") document.documentElement.dataset.theme = stored;
})();
