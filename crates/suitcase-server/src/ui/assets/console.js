// suitcase console: the one script. It refreshes the live part of a campaign page (an element
// with data-live="URL") every 2 seconds until the campaign is completed or cancelled (the
// fragment then carries data-final), and for at most 2 hours. No inline script anywhere: the
// Content-Security-Policy allows only this file (script-src 'self').
(function () {
  'use strict';
  var PERIOD_MS = 2000;
  var MAX_TICKS = 3600;
  function watch(el) {
    var url = el.getAttribute('data-live');
    var ticks = 0;
    function tick() {
      ticks += 1;
      if (ticks > MAX_TICKS || el.querySelector('[data-final]')) {
        return;
      }
      fetch(url, { credentials: 'same-origin', headers: { 'Accept': 'text/html' } })
        .then(function (r) {
          if (r.redirected || !r.ok) {
            throw new Error('refresh stopped: ' + r.status);
          }
          return r.text();
        })
        .then(function (html) {
          // The fragment is the server's own escaped HTML, from this origin.
          el.innerHTML = html;
          el.setAttribute('data-refreshed', String(ticks));
          window.setTimeout(tick, PERIOD_MS);
        })
        .catch(function () {
          window.setTimeout(tick, PERIOD_MS * 5);
        });
    }
    window.setTimeout(tick, PERIOD_MS);
  }
  document.addEventListener('DOMContentLoaded', function () {
    var els = document.querySelectorAll('[data-live]');
    for (var i = 0; i < els.length; i++) {
      watch(els[i]);
    }
  });
})();
