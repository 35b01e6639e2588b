// labwitness web UI behaviour (no inline scripts: the pages' CSP allows /static only).
// - forms with data-confirm ask first
// - report players: a <video> per camera plays the window's segments one after another
//   (each from /api/v1/segments/{id}/media, HTTP Range), fetching further pages of clips from the
//   report's clips API as it goes; the timeline seeks across them
"use strict";
(function () {
  document.addEventListener("submit", function (ev) {
    var f = ev.target;
    if (f.dataset && f.dataset.confirm && !window.confirm(f.dataset.confirm)) { ev.preventDefault(); }
  }, true);
  // while an htmx request of a form runs, its button is disabled (no double scans/exports)
  document.addEventListener("htmx:beforeRequest", function (ev) {
    var b = ev.target.querySelector && ev.target.querySelector("button[type=submit]");
    if (b) { b.disabled = true; }
  });
  document.addEventListener("htmx:afterRequest", function (ev) {
    var b = ev.target.querySelector && ev.target.querySelector("button[type=submit]");
    if (b) { b.disabled = false; }
  });

  // A report window's player.  The page lists the window's first clips (data-playlist); the rest
  // come a page at a time from the report's clips API (data-next: the page after them; data-pages
  // plus &at=<ms>: the page playing at an instant), so a week-long test is not ten thousand clips
  // in the page.  Clip times are epoch ms: s start, e end.
  function Player(video) {
    this.video = video;
    this.list = JSON.parse(video.dataset.playlist || "[]");
    this.next = video.dataset.next || null;
    this.pages = video.dataset.pages || null;
    this.index = -1;
    this.pendingSeek = null;
    this.asked = 0;  // the latest page request: an older answer arriving late is dropped
    this.svg = document.querySelector('svg.timeline[data-player="' + video.id + '"]');
    this.label = document.querySelector('[data-clock-for="' + video.id + '"]');
    try {
      this.fmt = new Intl.DateTimeFormat(video.dataset.lang || undefined, {
        timeZone: video.dataset.tz || undefined, year: "numeric", month: "2-digit", day: "2-digit",
        hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false });
    } catch (e) { this.fmt = null; }
    var self = this;
    video.addEventListener("ended", function () { self.forward(); });
    video.addEventListener("loadedmetadata", function () {
      if (self.pendingSeek !== null) { video.currentTime = Math.min(self.pendingSeek, video.duration || self.pendingSeek); self.pendingSeek = null; }
    });
    video.addEventListener("timeupdate", function () { self.show(); });
    if (this.svg) {
      this.svg.addEventListener("click", function (ev) {
        var r = self.svg.getBoundingClientRect();
        var lo = Number(self.svg.dataset.start), hi = Number(self.svg.dataset.end);
        self.seekTo(lo + (hi - lo) * (ev.clientX - r.left) / r.width);
      });
    }
    if (this.list.length) { this.load(0, 0, false); }
  }
  // one page of clips: {list, next}; null when the request failed (the player stays where it is)
  Player.prototype.fetchPage = function (url) {
    var id = ++this.asked, self = this;
    return fetch(url, { credentials: "same-origin", headers: { "Accept": "application/json" } })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (body) {
        if (!body || id !== self.asked) { return null; }
        return { next: body.clips_next || null, list: body.clips.map(function (c) {
          return { u: c.media_url, s: Date.parse(c.start), e: Date.parse(c.end) }; }) };
      }, function () { return null; });
  };
  Player.prototype.forward = function () {
    var self = this;
    if (this.index + 1 < this.list.length) { this.load(this.index + 1, 0, true); return; }
    if (!this.next) { return; }
    this.fetchPage(this.next).then(function (page) {
      if (!page || !page.list.length) { return; }
      var i = self.list.length;
      self.list = self.list.concat(page.list);
      self.next = page.next;
      self.load(i, 0, true);
    });
  };
  Player.prototype.load = function (i, offset, play) {
    this.index = i;
    this.pendingSeek = offset > 0 ? offset : null;
    this.video.src = this.list[i].u;
    this.video.dataset.clip = String(i);
    this.video.dataset.clipStart = String(this.list[i].s);
    if (play) { var p = this.video.play(); if (p && p.catch) { p.catch(function () {}); } }
  };
  Player.prototype.playAt = function (ms) {
    var i = 0;
    while (i < this.list.length - 1 && this.list[i].e <= ms) { i++; }
    var c = this.list[i];
    var offset = Math.max(0, (ms - c.s) / 1000);
    if (i === this.index && this.video.readyState >= 1) { this.video.currentTime = offset; this.video.play(); }
    else { this.load(i, offset, true); }
  };
  Player.prototype.seekTo = function (ms) {
    var n = this.list.length, self = this;
    // inside what is listed (or past it with nothing more to fetch): play from the list
    if (n && ms >= this.list[0].s && (ms < this.list[n - 1].e || !this.next)) { this.playAt(ms); return; }
    if (!this.pages) { if (n) { this.playAt(ms); } return; }
    this.fetchPage(this.pages + "&at=" + Math.max(0, Math.round(ms))).then(function (page) {
      if (!page || !page.list.length) { return; }
      self.list = page.list;
      self.next = page.next;
      self.index = -1;
      self.playAt(ms);
    });
  };
  Player.prototype.show = function () {
    if (this.index < 0) { return; }
    var at = this.list[this.index].s + this.video.currentTime * 1000;
    if (this.label && this.fmt) { this.label.textContent = this.fmt.format(new Date(at)); }
    if (this.svg) {
      var lo = Number(this.svg.dataset.start), hi = Number(this.svg.dataset.end);
      var x = ((at - lo) * 100 / (hi - lo)).toFixed(3);
      var ph = this.svg.querySelector("line.playhead");
      if (ph) { ph.setAttribute("x1", x); ph.setAttribute("x2", x); }
    }
  };
  function init() {
    document.querySelectorAll("video[data-playlist]").forEach(function (v) { v.player = new Player(v); });
  }
  if (document.readyState === "loading") { document.addEventListener("DOMContentLoaded", init); } else { init(); }
})();
