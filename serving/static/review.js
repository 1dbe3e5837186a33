// The moderators' review page: lists GET /v1/moderation/queue and posts decisions to
// POST /v1/moderation/{id}/review. No library, no CDN, no web font: the page works offline.
// Sign-in: a token in the address's fragment (#token=...) is moved to this tab's sessionStorage and the
// fragment cleared; otherwise a pasted one. Every API call sends it as "Authorization: Bearer". Media is
// fetched with that header and shown from blob: URLs (an <img src> cannot send headers).
// document.body.dataset.ready: "1" when the queue and its media are drawn, "login" when a token is needed,
// "forbidden" when the token is not a moderator's, "error" when the queue could not be read.
(function () {
  "use strict";

  var TOKEN_KEY = "socialpulse.token";
  var QUEUE_PAGE = 100;
  var blobUrls = [];

  function $(id) { return document.getElementById(id); }
  function show(el, on) { el.hidden = !on; }

  function token() { return sessionStorage.getItem(TOKEN_KEY); }

  function takeTokenFromFragment() {
    var hash = window.location.hash.replace(/^#/, "");
    if (!hash) return;
    var params = new URLSearchParams(hash);
    var t = params.get("token");
    if (t) {
      sessionStorage.setItem(TOKEN_KEY, t.trim());
      // the token must not stay in the address bar or the history
      history.replaceState(null, "", window.location.pathname + window.location.search);
    }
  }

  // who the token says it is (for display only: the API verifies it)
  function claims(t) {
    try {
      var part = t.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
      while (part.length % 4) part += "=";
      return JSON.parse(atob(part));
    } catch (e) { return {}; }
  }

  function api(path, options) {
    options = options || {};
    var headers = Object.assign({ "Authorization": "Bearer " + token() }, options.headers || {});
    return fetch(path, Object.assign({}, options, { headers: headers, cache: "no-store" }));
  }

  function errorText(resp) {
    return resp.json().then(function (b) { return (b && b.error) || ("HTTP " + resp.status); },
                            function () { return "HTTP " + resp.status; });
  }

  function pageError(msg) {
    var box = $("page-error");
    box.textContent = msg;
    show(box, !!msg);
  }

  function status(msg) {
    var box = $("page-status");
    box.textContent = msg;
    show(box, !!msg);
  }

  function showLogin(msg) {
    show($("login"), true);
    show($("sign-out"), false);
    $("who").textContent = "";
    pageError(msg || "");
    document.body.dataset.ready = "login";
  }

  function fmtScore(v) { return v === null || v === undefined ? "–" : Number(v).toFixed(2); }

  function summary(total, shown) {
    $("summary").textContent = total === 0 ? "No open items" :
      total + " open item" + (total === 1 ? "" : "s") + (shown < total ? " (showing " + shown + ")" : "");
  }

  var state = { total: 0 };

  function loadMedia(box, url, altText) {
    return api(url).then(function (resp) {
      if (!resp.ok) return errorText(resp).then(function (m) { throw new Error(m); });
      return resp.blob();
    }).then(function (blob) {
      var src = URL.createObjectURL(blob);
      blobUrls.push(src);
      var el;
      if ((blob.type || "").indexOf("video/") === 0) {
        el = document.createElement("video");
        el.controls = true;
        el.muted = true;
        el.preload = "metadata";
      } else {
        el = document.createElement("img");
        el.alt = altText || "the post's media";
      }
      box.textContent = "";
      box.appendChild(el);
      return new Promise(function (resolve) {
        var done = function (ok) { box.dataset.media = ok ? "loaded" : "broken"; resolve(); };
        if (el.tagName === "IMG") {
          el.onload = function () { done(true); };
          el.onerror = function () { box.textContent = "media could not be displayed"; done(false); };
        } else {
          el.onloadedmetadata = function () { done(true); };
          el.onerror = function () { done(false); };
          setTimeout(function () { if (!box.dataset.media) done(false); }, 10000);
        }
        el.src = src;
      });
    }).catch(function (e) {
      box.textContent = "media unavailable: " + e.message;
      box.dataset.media = "unavailable";
    });
  }

  function renderItem(item) {
    var li = document.importNode($("item-template").content, true).querySelector("li");
    li.dataset.postId = item.post_id;
    var action = li.querySelector(".badge.action");
    action.textContent = item.action;
    action.title = "current decision (" + item.decided_by + ")";
    show(li.querySelector(".badge.appeal"), item.appeal);
    li.querySelector(".post-id").textContent = item.post_id;
    li.querySelector(".kind").textContent = item.kind || "post";
    li.querySelector(".author").textContent = item.author_id;
    var text = li.querySelector(".text");
    if (item.text) { text.textContent = item.text; } else { text.textContent = "no text"; text.classList.add("none"); }
    if (item.appeal && item.appeal_message) {
      var ap = li.querySelector(".appeal-message");
      ap.querySelector("span").textContent = item.appeal_message;
      show(ap, true);
    }
    var reasons = li.querySelector(".reasons");
    (item.reasons.length ? item.reasons : ["no reason recorded"]).forEach(function (r) {
      var rli = document.createElement("li");
      rli.textContent = r;
      reasons.appendChild(rli);
    });
    var scores = li.querySelector(".scores");
    ["hatespeech", "offensive", "nsfw"].forEach(function (k) {
      var dt = document.createElement("dt");
      dt.textContent = k;
      var dd = document.createElement("dd");
      dd.textContent = fmtScore(item.scores[k]);
      dd.dataset.score = k;
      scores.appendChild(dt);
      scores.appendChild(dd);
    });
    var media = li.querySelector(".media");
    var loading = null;
    if (item.media_url) {
      media.textContent = "loading media…";
      loading = loadMedia(media, item.media_url, item.alt_text);
    } else {
      media.textContent = item.media_status === "error" ? "media could not be analysed" : "no media";
      media.classList.add("none");
    }
    li.querySelector("form.decide").addEventListener("submit", function (ev) {
      ev.preventDefault();
      var decision = ev.submitter && ev.submitter.value;
      if (decision) decide(li, item, decision);
    });
    return { li: li, loading: loading };
  }

  function decide(li, item, decision) {
    var form = li.querySelector("form.decide");
    var err = li.querySelector(".item-error");
    var buttons = form.querySelectorAll("button");
    buttons.forEach(function (b) { b.disabled = true; });
    show(err, false);
    var note = form.elements.note.value.trim();
    api("/v1/moderation/" + encodeURIComponent(item.post_id) + "/review", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ decision: decision, note: note || null })
    }).then(function (resp) {
      if (resp.ok) {
        li.querySelectorAll("img, video").forEach(function (m) {
          if (m.src.indexOf("blob:") === 0) URL.revokeObjectURL(m.src);
        });
        li.remove();
        state.total = Math.max(0, state.total - 1);
        summary(state.total, $("queue").children.length);
        show($("empty"), $("queue").children.length === 0);
        status("Decided " + item.post_id + ": " + decision);
        document.body.dataset.decided = String(Number(document.body.dataset.decided || 0) + 1);
        return;
      }
      if (resp.status === 401) { sessionStorage.removeItem(TOKEN_KEY); showLogin("Your token expired: sign in again."); }
      return errorText(resp).then(function (m) {
        err.textContent = "Not recorded: " + m;
        show(err, true);
        buttons.forEach(function (b) { b.disabled = false; });
      });
    }).catch(function (e) {
      err.textContent = "Not recorded: " + e.message;
      show(err, true);
      buttons.forEach(function (b) { b.disabled = false; });
    });
  }

  function loadQueue() {
    delete document.body.dataset.ready;
    pageError("");
    var c = claims(token());
    $("who").textContent = c.sub ? "Signed in as " + c.sub + (c.role ? " (" + c.role + ")" : "") : "Signed in";
    show($("sign-out"), true);
    show($("login"), false);
    return api("/v1/moderation/queue?limit=" + QUEUE_PAGE).then(function (resp) {
      if (resp.status === 401) {
        sessionStorage.removeItem(TOKEN_KEY);
        return errorText(resp).then(function (m) { showLogin("Sign-in refused: " + m); });
      }
      if (resp.status === 403) {
        return errorText(resp).then(function (m) {
          pageError("This page is for moderators: your token does not have the moderator role (" + m + ").");
          document.body.dataset.ready = "forbidden";
        });
      }
      if (!resp.ok) {
        return errorText(resp).then(function (m) {
          pageError("The review queue could not be read: " + m);
          document.body.dataset.ready = "error";
        });
      }
      return resp.json().then(function (page) {
        var list = $("queue");
        list.textContent = "";
        state.total = page.total;
        var loads = [];
        page.items.forEach(function (item) {
          var r = renderItem(item);
          list.appendChild(r.li);
          if (r.loading) loads.push(r.loading);
        });
        summary(page.total, page.items.length);
        show($("empty"), page.items.length === 0);
        return Promise.all(loads).then(function () { document.body.dataset.ready = "1"; });
      });
    }).catch(function (e) {
      pageError("The review queue could not be read: " + e.message);
      document.body.dataset.ready = "error";
    });
  }

  function main() {
    takeTokenFromFragment();
    $("login").addEventListener("submit", function (ev) {
      ev.preventDefault();
      var t = $("token-input").value.trim();
      if (!t) return;
      sessionStorage.setItem(TOKEN_KEY, t);
      $("token-input").value = "";
      loadQueue();
    });
    $("sign-out").addEventListener("click", function () {
      sessionStorage.removeItem(TOKEN_KEY);
      blobUrls.forEach(function (u) { URL.revokeObjectURL(u); });
      blobUrls = [];
      $("queue").textContent = "";
      $("summary").textContent = "";
      show($("empty"), false);
      status("");
      showLogin("");
    });
    if (token()) loadQueue(); else showLogin("");
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", main);
  else main();
})();
