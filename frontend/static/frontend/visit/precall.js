// The pre-call check (VID-5): camera and microphone (preview, level meter, device choice), then the network
// test against the server's echo peer (docs/video-network.md: the "probe" data channel), and the
// recommendation ("video" or "audio") kept in sessionStorage for the call page. Plain script, no build.
(function () {
  "use strict";

  var RECOMMENDATION_KEY = "teleconsult.precall.recommendation";
  // Phone-friendly: the front camera, 360p at up to 24 frames (what the call sends), voice processing on.
  var VIDEO = { facingMode: "user", width: { ideal: 640 }, height: { ideal: 360 }, frameRate: { ideal: 24, max: 30 } };
  var AUDIO = { echoCancellation: true, noiseSuppression: true, autoGainControl: true };
  var GATHERING_TIMEOUT_MS = 3000;
  var RESULT_TIMEOUT_MS = 15000;

  function json(id, fallback) {
    var node = document.getElementById(id);
    if (!node) { return fallback; }
    try { return JSON.parse(node.textContent); } catch (e) { return fallback; }
  }

  function fill(text, values) {
    return text.replace(/\{(\w+)\}/g, function (whole, name) {
      return Object.prototype.hasOwnProperty.call(values, name) ? String(values[name]) : whole;
    });
  }

  function Check(root) {
    this.root = root;
    this.words = json("precall-catalog", {});
    this.iceServers = json("precall-ice-servers", []);
    this.offerUrl = root.getAttribute("data-offer-url");
    this.csrf = (root.querySelector("[name=csrfmiddlewaretoken]") || {}).value || "";
    this.preview = root.querySelector("[data-preview]");
    this.meter = root.querySelector("[data-mic-level]");
    this.cameraSelect = root.querySelector("[data-camera]");
    this.micSelect = root.querySelector("[data-microphone]");
    this.deviceStatus = root.querySelector("[data-device-status]");
    this.startDevices = root.querySelector("[data-start-devices]");
    this.startNetwork = root.querySelector("[data-start-network]");
    this.stream = null;
    this.audio = null;
    this.pc = null;
    this.peak = 0;
    this.networkTried = false;
    this.bind();
  }

  Check.prototype.say = function (node, key, values) {
    node.textContent = fill(this.words[key] || key, values || {});
  };

  Check.prototype.bind = function () {
    var self = this;
    if (!window.isSecureContext) {
      this.say(this.deviceStatus, "insecure");
      this.deviceStatus.classList.add("error");
      this.startDevices.disabled = true;
      return;
    }
    if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia || !window.RTCPeerConnection) {
      // A camera without WebRTC is no use for the visit (it would go on by chat): no device test either.
      this.say(this.deviceStatus, navigator.mediaDevices && navigator.mediaDevices.getUserMedia ? "no_calls" : "unsupported");
      this.deviceStatus.classList.add("error");
      this.startDevices.disabled = true;
      return;
    }
    this.startDevices.addEventListener("click", function () { self.openDevices(); });
    this.startNetwork.addEventListener("click", function () { self.runNetwork(); });
    this.cameraSelect.addEventListener("change", function () { self.openDevices(); });
    this.micSelect.addEventListener("change", function () { self.openDevices(); });
  };

  Check.prototype.constraints = function (withVideo) {
    var video = withVideo ? Object.assign({}, VIDEO) : false;
    var audio = Object.assign({}, AUDIO);
    if (video && this.cameraSelect.value) {
      delete video.facingMode;
      video.deviceId = { exact: this.cameraSelect.value };
    }
    if (this.micSelect.value) { audio.deviceId = { exact: this.micSelect.value }; }
    return { video: video, audio: audio };
  };

  Check.prototype.openDevices = function () {
    var self = this;
    this.deviceStatus.classList.remove("error");
    this.say(this.deviceStatus, "starting");
    this.startDevices.disabled = true;
    this.stopStream();
    var media = navigator.mediaDevices;
    return media.getUserMedia(this.constraints(true)).then(function (stream) {
      return { stream: stream, camera: true };
    }, function (error) {
      // No camera (or the chosen one is gone): the microphone alone still allows an audio visit.
      if (error && (error.name === "NotFoundError" || error.name === "OverconstrainedError")) {
        return media.getUserMedia(self.constraints(false)).then(function (stream) {
          return { stream: stream, camera: false };
        });
      }
      throw error;
    }).then(function (opened) {
      self.stream = opened.stream;
      self.preview.srcObject = opened.stream;
      var played = self.preview.play();
      if (played && played.catch) { played.catch(function () {}); }
      self.listen(opened.stream);
      self.say(self.deviceStatus, opened.camera ? "devices_ok" : "no_camera");
      self.startDevices.disabled = false;
      return self.listDevices().then(function () {
        // Once by itself: choosing another camera later must not spend the session's few tests.
        if (!self.networkTried) { self.networkTried = true; self.runNetwork(); }
      });
    }).catch(function (error) {
      var name = error && error.name;
      var key = { NotAllowedError: "not_allowed", SecurityError: "not_allowed", NotFoundError: "not_found",
                  NotReadableError: "not_readable", AbortError: "not_readable" }[name] || "device_error";
      self.deviceStatus.classList.add("error");
      self.say(self.deviceStatus, key);
      self.startDevices.disabled = false;
      self.startNetwork.disabled = false;
    });
  };

  Check.prototype.stopStream = function () {
    if (this.stream) { this.stream.getTracks().forEach(function (track) { track.stop(); }); }
    this.stream = null;
  };

  Check.prototype.listDevices = function () {
    var self = this;
    if (!navigator.mediaDevices.enumerateDevices) { return Promise.resolve(); }
    return navigator.mediaDevices.enumerateDevices().then(function (devices) {
      var current = {};
      self.stream.getTracks().forEach(function (track) {
        var settings = track.getSettings ? track.getSettings() : {};
        current[track.kind] = settings.deviceId || "";
      });
      self.fillSelect(self.cameraSelect, devices, "videoinput", "camera_default", current.video);
      self.fillSelect(self.micSelect, devices, "audioinput", "microphone_default", current.audio);
    });
  };

  Check.prototype.fillSelect = function (select, devices, kind, fallbackKey, currentId) {
    var self = this, n = 0;
    var found = devices.filter(function (device) { return device.kind === kind && device.deviceId; });
    if (!found.length) { select.disabled = true; return; }
    while (select.firstChild) { select.removeChild(select.firstChild); }
    found.forEach(function (device) {
      n += 1;
      var option = document.createElement("option");
      option.value = device.deviceId;
      option.textContent = device.label || fill(self.words[fallbackKey] || "", { n: n });
      option.selected = device.deviceId === currentId;
      select.appendChild(option);
    });
    select.disabled = found.length < 2;
  };

  // The level meter: the loudness of the last few milliseconds, ten times a second.
  Check.prototype.listen = function (stream) {
    var self = this;
    var Context = window.AudioContext || window.webkitAudioContext;
    if (!Context || !stream.getAudioTracks().length) { return; }
    if (!this.audio) {
      this.audio = { context: new Context(), timer: null, source: null };
      this.audio.analyser = this.audio.context.createAnalyser();
      this.audio.analyser.fftSize = 1024;
      this.audio.samples = new Uint8Array(this.audio.analyser.fftSize);
    }
    var audio = this.audio;
    if (audio.context.state === "suspended") { audio.context.resume(); }
    if (audio.source) { audio.source.disconnect(); }
    audio.source = audio.context.createMediaStreamSource(stream);
    audio.source.connect(audio.analyser);
    if (audio.timer) { return; }
    audio.timer = window.setInterval(function () {
      audio.analyser.getByteTimeDomainData(audio.samples);
      var sum = 0;
      for (var i = 0; i < audio.samples.length; i += 1) {
        var v = (audio.samples[i] - 128) / 128;
        sum += v * v;
      }
      // RMS scaled so that normal speech fills about half the bar.
      var level = Math.min(100, Math.round(Math.sqrt(sum / audio.samples.length) * 300));
      self.meter.value = level;
      self.meter.textContent = String(level);
      self.peak = Math.max(self.peak, level);
      self.meter.setAttribute("data-peak", String(self.peak));
    }, 100);
  };

  // --- the network test ---

  Check.prototype.networkNodes = function () {
    var root = this.root;
    return {
      status: root.querySelector("[data-network-status]"),
      recommendation: root.querySelector("[data-recommendation]"),
      result: root.querySelector("[data-network-result]"),
      short: root.querySelector("[data-recommendation-short]"),
      rtt: root.querySelector("[data-rtt]"),
      loss: root.querySelector("[data-loss]"),
      bitrate: root.querySelector("[data-bitrate]")
    };
  };

  Check.prototype.closePeer = function () {
    if (this.pc) { this.pc.close(); }
    this.pc = null;
  };

  Check.prototype.runNetwork = function () {
    var self = this, nodes = this.networkNodes();
    this.closePeer();
    nodes.result.hidden = true;
    nodes.recommendation.hidden = true;
    nodes.status.classList.remove("error");
    this.say(nodes.status, "network_running");
    this.startNetwork.disabled = true;
    var pc = new RTCPeerConnection({ iceServers: this.iceServers });
    this.pc = pc;
    if (this.stream) {
      this.stream.getTracks().forEach(function (track) { pc.addTrack(track, self.stream); });
    }
    // Unordered without retransmissions, so that a lost probe stays lost (the protocol's loss figure).
    var channel = pc.createDataChannel("probe", { ordered: false, maxRetransmits: 0 });
    var finished = false;
    var timer = window.setTimeout(function () { fail("network_failed"); }, RESULT_TIMEOUT_MS);

    function fail(key, message) {
      if (finished) { return; }
      finished = true;
      window.clearTimeout(timer);
      nodes.status.classList.add("error");
      if (message) { nodes.status.textContent = message; } else { self.say(nodes.status, key); }
      self.startNetwork.disabled = false;
      if (self.pc === pc) { self.closePeer(); }
    }

    channel.onopen = function () { channel.send(JSON.stringify({ type: "start" })); };
    channel.onmessage = function (event) {
      var data = event.data;
      if (typeof data !== "string") { return; }
      var message;
      try { message = JSON.parse(data); } catch (e) { return; }
      if (message.type === "probe") {
        // Written back unchanged but for its type, so the server measures what it sent.
        if (channel.readyState === "open") { channel.send(data.replace(/"type"\s*:\s*"probe"/, '"type": "echo"')); }
      } else if (message.type === "result" && !finished) {
        finished = true;
        window.clearTimeout(timer);
        self.show(message, nodes);
        self.startNetwork.disabled = false;
        if (self.pc === pc) { self.closePeer(); }
      }
    };
    pc.onconnectionstatechange = function () {
      if (pc.connectionState === "failed") { fail("network_failed"); }
    };

    pc.createOffer().then(function (offer) {
      return pc.setLocalDescription(offer);
    }).then(function () {
      return gathered(pc);
    }).then(function () {
      return fetch(self.offerUrl, {
        method: "POST",
        credentials: "same-origin",
        headers: { "Content-Type": "application/json", "X-CSRFToken": self.csrf },
        body: JSON.stringify({ sdp: pc.localDescription.sdp, type: "offer" })
      });
    }).then(function (response) {
      return response.json().catch(function () { return {}; }).then(function (body) {
        if (response.ok && body.type === "answer") { return pc.setRemoteDescription(body); }
        var fallback = response.status === 403 ? "network_forbidden" : "network_error";
        var error = new Error("refused");
        error.key = fallback;
        // 403/429/503 (and 400) carry a translated message; Django's own 403 page (CSRF) does not.
        error.words = typeof body.message === "string" ? body.message : "";
        throw error;
      });
    }).catch(function (error) {
      fail(error && error.key ? error.key : "network_failed", error && error.words);
    });
  };

  // Candidates are in the offer (the server does not trickle): wait for gathering, but not forever.
  function gathered(pc) {
    if (pc.iceGatheringState === "complete") { return Promise.resolve(); }
    return new Promise(function (resolve) {
      var done = window.setTimeout(resolve, GATHERING_TIMEOUT_MS);
      pc.addEventListener("icegatheringstatechange", function () {
        if (pc.iceGatheringState === "complete") { window.clearTimeout(done); resolve(); }
      });
    });
  }

  Check.prototype.show = function (result, nodes) {
    var video = result.recommendation === "video";
    var locale = document.documentElement.lang || undefined;
    var number = function (value, digits) {
      return Number(value || 0).toLocaleString(locale, { maximumFractionDigits: digits });
    };
    nodes.status.textContent = "";
    this.say(nodes.recommendation, video ? "recommend_video" : "recommend_audio");
    nodes.recommendation.hidden = false;
    this.say(nodes.short, video ? "recommend_video_short" : "recommend_audio_short");
    this.say(nodes.rtt, "rtt", { ms: number(result.rtt_ms, 0) });
    this.say(nodes.loss, "loss", { pct: number((result.loss || 0) * 100, 1) });
    this.say(nodes.bitrate, "bitrate", { kbps: number(result.bitrate_kbps, 0) });
    nodes.result.hidden = false;
    this.root.setAttribute("data-recommendation-value", video ? "video" : "audio");
    try {
      window.sessionStorage.setItem(RECOMMENDATION_KEY, JSON.stringify({
        recommendation: video ? "video" : "audio",
        rtt_ms: result.rtt_ms, loss: result.loss, bitrate_kbps: result.bitrate_kbps, at: Date.now()
      }));
    } catch (e) { /* storage disabled (private mode): the call page simply starts with video */ }
  };

  document.addEventListener("DOMContentLoaded", function () {
    var root = document.querySelector("[data-precall]");
    if (root) {
      var check = new Check(root);
      window.addEventListener("pagehide", function () { check.closePeer(); check.stopStream(); });
    }
  });
})();
