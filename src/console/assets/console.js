/* global window, document, history */
// Progressive enhancement only: every page works without this file, except passkey ceremonies.
(function () {
  'use strict';
  document.documentElement.classList.add('js');

  function ready(fn) {
    if (document.readyState !== 'loading') fn();
    else document.addEventListener('DOMContentLoaded', fn);
  }

  function copy(button) {
    var target = document.getElementById(button.getAttribute('data-copy'));
    if (!target) return;
    var text = (target.value !== undefined ? target.value : target.textContent).trim();
    var done = function () {
      var label = button.textContent;
      button.textContent = 'Copied';
      setTimeout(function () {
        button.textContent = label;
      }, 1500);
    };
    if (navigator.clipboard && window.isSecureContext) navigator.clipboard.writeText(text).then(done, function () {});
  }

  async function postJson(url, body) {
    var res = await fetch(url, {
      method: 'POST',
      credentials: 'same-origin',
      headers: { 'content-type': 'application/json', accept: 'application/json' },
      body: JSON.stringify(body || {}),
    });
    var data = await res.json().catch(function () {
      return {};
    });
    if (!res.ok) throw new Error(data.message || 'The request failed.');
    return data;
  }

  async function passkey(button) {
    var kind = button.getAttribute('data-passkey');
    var section = button.closest('section') || document;
    var out = section.querySelector('[data-passkey-error]');
    if (out) out.textContent = '';
    var W = window.SimpleWebAuthnBrowser;
    try {
      if (!W || !W.browserSupportsWebAuthn()) throw new Error('This browser does not support passkeys.');
      var nameField = document.getElementById('passkey_name');
      var name = nameField ? nameField.value : '';
      var codeField = document.getElementById('code');
      var code = codeField ? codeField.value.trim() : '';
      var result;
      button.disabled = true;
      if (kind === 'sign-in') {
        var opts = await postJson('/console/passkey/sign-in/options');
        var assertion = await W.startAuthentication({ optionsJSON: opts });
        result = await postJson('/console/passkey/sign-in', { response: assertion });
      } else if (kind === 'invite') {
        var o = await postJson('/console/invitation/passkey/options', { code: code });
        var att = await W.startRegistration({ optionsJSON: o });
        result = await postJson('/console/invitation/passkey', { code: code, name: name, response: att });
      } else {
        var r = await postJson('/console/passkeys/options');
        var reg = await W.startRegistration({ optionsJSON: r });
        result = await postJson('/console/passkeys', { name: name, response: reg });
      }
      window.location.assign(result.redirect || '/console');
    } catch (err) {
      button.disabled = false;
      if (out)
        out.textContent =
          err && err.name === 'NotAllowedError' ? 'The passkey prompt was cancelled or timed out.' : (err && err.message) || 'Something went wrong.';
    }
  }

  ready(function () {
    document.querySelectorAll('button[data-copy]').forEach(function (b) {
      b.addEventListener('click', function () {
        copy(b);
      });
    });
    document.querySelectorAll('form[data-confirm]').forEach(function (f) {
      f.addEventListener('submit', function (e) {
        if (!window.confirm(f.getAttribute('data-confirm'))) e.preventDefault();
      });
    });
    document.querySelectorAll('button[data-passkey]').forEach(function (b) {
      b.hidden = false;
      b.addEventListener('click', function () {
        passkey(b);
      });
    });
    document.querySelectorAll('input[data-filter]').forEach(function (input) {
      var table = document.getElementById(input.getAttribute('data-filter'));
      input.hidden = false;
      input.addEventListener('input', function () {
        var q = input.value.toLowerCase();
        table.querySelectorAll('tbody tr').forEach(function (tr) {
          tr.hidden = q !== '' && tr.textContent.toLowerCase().indexOf(q) < 0;
        });
      });
    });
    // The invitation code travels in the link's fragment (never sent to a server): move it into the form.
    var code = document.getElementById('code');
    if (code && window.location.hash.length > 1) {
      code.value = decodeURIComponent(window.location.hash.slice(1));
      history.replaceState(null, '', window.location.pathname);
    }
  });
})();
