// labwitness web UI behaviour (no inline scripts: the pages' CSP allows /static only).
// - forms with data-confirm ask first
// - report players: a <video> per camera plays the window's segments one after another
//   (each from /api/v1/segments/{id}/media, HTTP Range), the timeline seeks across them
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

  function Player(video) {
    this.video = video;
    this.list = JSON.parse(video.dataset.playlist || "[]");
    this.index = -1;
    this.pendingSeek = null;
    this.svg = document.querySelector('svg.timeline[data-player="' + video.id + '"]');
    this.label = document.querySelector('[data-clock-for="' + video.id + '"]');
    try {
      this.fmt = new Intl.DateTimeFormat(video.dataset.lang || undefined, {
        timeZone: video.dataset.tz || undefined, year: "numeric", month: "2-digit", day: "2-digit",
        hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false });
    } catch (e) { this.fmt = null; }
    var self = this;
    video.addEventListener("ended", function () { if (self.index + 1 < self.list.length) { self.load(self.index + 1, 0, true); } });
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
  Player.prototype.load = function (i, offset, play) {
    this.index = i;
    this.pendingSeek = offset > 0 ? offset : null;
    this.video.src = this.list[i].u;
    this.video.dataset.clip = String(i);
    if (play) { var p = this.video.play(); if (p && p.catch) { p.catch(function () {}); } }
  };
  Player.prototype.seekTo = function (ms) {
    var i = 0;
    while (i < this.list.length - 1 && this.list[i].e <= ms) { i++; }
    var c = this.list[i];
    var offset = Math.max(0, (ms - c.s) / 1000);
    if (i === this.index && this.video.readyState >= 1) { this.video.currentTime = offset; this.video.play(); }
    else { this.load(i, offset, true); }
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
