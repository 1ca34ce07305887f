// The video visit in the browser (VID-3, VID-4): the waiting room and the call, speaking the protocol of
// docs/signalling.md over /ws/visit/<public id>/. One RTCPeerConnection per other participant (a mesh of up to
// four), perfect negotiation, trickle ICE, reconnection with back-off, ICE restarts, a quality indicator from
// getStats with an automatic step-down to audio only, and the chat as the last fallback.
// Every string shown comes from the catalog the page renders (#call-strings); none is written here.
(function () {
  "use strict";

  var root = document.querySelector("[data-call]");
  if (!root) { return; }
  var STRINGS = JSON.parse(document.getElementById("call-strings").textContent);
  var VISIT = root.getAttribute("data-visit");
  var IS_HOST_PAGE = root.hasAttribute("data-host");
  // A browser without WebRTC (an old or stripped-down one, some in-app browsers): it can still wait, be admitted
  // and take part by chat, the last fallback (docs/signalling.md, "Chat only"). It opens no devices and makes no
  // connections; it tells the others so with `media_state` modality "chat", and they stop offering to it.
  var CHAT_ONLY = typeof window.RTCPeerConnection !== "function";

  // Close codes after which reconnecting would only be refused again (docs/signalling.md, "Close codes").
  // 1000 comes after our own "leave" (state.finished is set then); from anywhere else it is a drop like any other.
  var FINAL = { 4401: "signed_out", 4403: "not_yours", 4404: "unknown", 4408: "window",
    4409: "replaced", 4410: "ended", 4412: "consent", 4420: "full", 4431: "declined" };
  var NEGOTIATION = { welcome: 1, admitted: 1, peer_joined: 1, peer_left: 1, offer: 1, answer: 1, ice: 1 };
  var MEDIA = {
    audio: { echoCancellation: true, noiseSuppression: true, autoGainControl: true },
    // Phone-friendly: a small picture at a modest rate leaves room for audio on a weak mobile link.
    video: function (facing) {
      return { width: { ideal: 640 }, height: { ideal: 360 }, frameRate: { ideal: 24, max: 24 }, facingMode: facing };
    }
  };
  // Thresholds of the indicator, per sample (every 2 s): worst of the connections counts.
  var POOR = { rtt: 0.6, loss: 0.1, bitrate: 150 };
  var FAIR = { rtt: 0.3, loss: 0.03, bitrate: 400 };
  var STEP_DOWN_AFTER = 3;  // poor samples in a row before video stops
  // Back up from audio only (see QualityPolicy): clean samples in a row before video is tried again, doubled
  // after every failed try up to the maximum; the try sends video for a few samples, unannounced, and the
  // step up happens only if they show the link carries it. Video that holds this long clears the failures.
  var STEP_UP_AFTER = 5;
  var STEP_UP_AFTER_MAX = 150;  // five minutes of samples
  var STEP_UP_CLEAN = { rtt: 0.25, loss: 0.02 };  // stricter than "good": no step up at the edge of it
  var TRIAL_SAMPLES = 2;  // good samples in a row while trying video before it is announced…
  var TRIAL_MIN = 4;      // …and not before this many: the queue of a narrow link takes seconds to show
  var TRIAL_POOR = 2;     // poor samples in a row that end the try (one alone may be the estimate still ramping up)
  var TRIAL_MAX = 8;      // a try that has not turned good by then failed
  var HOLD_MS = 60000;
  var QUICK_RETRIES_MS = 30000;  // reconnection attempts stay frequent this long after a drop

  function t(key, values) {
    var text = STRINGS[key] || key;
    Object.keys(values || {}).forEach(function (name) { text = text.split("{" + name + "}").join(values[name]); });
    return text;
  }
  function $(selector) { return root.querySelector(selector); }
  function show(selector, visible) { var el = $(selector); if (el) { el.hidden = !visible; } }

  var state = {
    me: null, role: null, phase: "connecting", iceServers: [], peers: new Map(), roles: new Map(),
    local: null, facing: "user", screen: null, muted: false, cameraOff: false,
    modality: "video", modalityAuto: false, forced: false, auto: false, probing: false, quality: null,
    ws: null, queue: Promise.resolve(), attempts: 0, welcomes: 0, finished: false, waiting: new Map(), mediaError: null,
    audioAdvice: recommendedAudioOnly(), mediaErrorName: null,
    serial: 0,  // connections made so far (each keeps its number: the test hook tells a kept one from a new one)
    policy: new QualityPolicy(),
    dropped: new Map(),  // participant id → DTLS fingerprint of the last connection to them we closed
    remoteMedia: new Map(),  // participant id → their last media_state (see remoteMediaState)
    media: null,  // the pending or settled opening of the camera and microphone (see startMedia)
    preview: { meter: null, hiddenTimer: null, released: false },  // the waiting room's self-view (see preview())
    soundBlocked: false,  // the browser refused to start the others' sound without a tap (see soundBlocked())
    chatOnly: CHAT_ONLY,
    chatOnlyTiles: new Map()  // participant id → the tile of another participant who takes part by chat only
  };

  function status(text) { var el = $("[data-call-status]"); if (el) { el.textContent = text; } }
  function isHost() { return state.role === "practitioner" || state.role === "consulted"; }
  function roleLabel(role) { return t("role_" + role); }

  // --- the websocket ---

  function send(type, fields) {
    if (!state.ws || state.ws.readyState !== WebSocket.OPEN) { return false; }
    var message = Object.assign({ v: 1, type: type }, fields || {});
    state.ws.send(JSON.stringify(message));
    return true;
  }

  function connect() {
    var scheme = location.protocol === "https:" ? "wss://" : "ws://";
    var ws = new WebSocket(scheme + location.host + "/ws/visit/" + VISIT + "/");
    state.ws = ws;
    ws.onmessage = function (event) {
      var message;
      try { message = JSON.parse(event.data); } catch (e) { return; }
      // Negotiation one message at a time, in order: an offer must not overtake the camera being opened, nor a
      // candidate the description it belongs to. The rest (chat, the end, a decline) never waits on the camera
      // prompt.
      if (!NEGOTIATION[message.type]) { handle(message); return; }
      state.queue = state.queue.then(function () { return handle(message); }).catch(function () {});
    };
    ws.onclose = function (event) {
      if (state.ws !== ws) { return; }
      var final = FINAL[event.code];
      if (final || state.finished) { finish(final || "left"); return; }
      // Back-off with jitter: 0.5 s, 1 s, 2 s … up to 30 s, each between half and the whole of it, so the
      // browsers of a clinic whose network came back do not all knock at once. For the first 30 s the delay
      // stays at 1 s at most: a restarted server is back within seconds, and a longer wait would keep the call
      // away after it returned (a refused connection costs a server that is down nothing).
      if (state.attempts === 0) { state.droppedAt = Date.now(); }
      var ceiling = Date.now() - state.droppedAt < QUICK_RETRIES_MS ? 1000 : 30000;
      var delay = Math.min(ceiling, 500 * Math.pow(2, state.attempts));
      delay = delay / 2 + Math.random() * delay / 2;
      state.attempts += 1;
      status(t("reconnecting"));
      window.setTimeout(connect, delay);
    };
  }

  function handle(message) {
    switch (message.type) {
    case "welcome": return welcome(message);
    case "waiting": return waitingEvent(message);
    case "admitted": return enterCall(message.peers);
    case "declined": return finish("declined");
    case "peer_joined": return peerJoined(message);
    case "peer_left": return peerLeft(message.participant);
    case "offer": case "answer": return description(message);
    case "ice": return candidate(message);
    case "chat": return chatShown(message);
    case "media_state": return remoteMediaState(message);
    case "end": state.finished = true; return finish("ended");
    case "error": return serverError(message);
    default: return recordingMessage(message);
    }
  }

  function welcome(message) {
    state.attempts = 0;
    state.welcomes += 1;
    state.me = message.participant;
    state.role = message.role;
    state.iceServers = message.iceServers || [];
    state.iceTransportPolicy = message.iceTransportPolicy === "relay" ? "relay" : "all";
    root.setAttribute("data-role", state.role);
    // The server lists who waits again after every welcome: start the list afresh.
    state.waiting.clear();
    renderWaiting();
    show("[data-host-only]", isHost());
    if (message.state === "waiting") {
      state.phase = "waiting";
      status(t("waiting"));
      show("[data-call-waiting]", true);
      preview();
      return;
    }
    // A reconnect: the connections that survived need new ICE paths (the network may have changed).
    var survivors = Array.from(state.peers.values());
    return enterCall(message.peers).then(function () {
      survivors.forEach(function (peer) { if (state.peers.get(peer.id) === peer) { peer.pc.restartIce(); } });
    });
  }

  function waitingEvent(message) {
    if (message.participant === undefined) {
      state.phase = "waiting";
      status(t("waiting"));
      return;
    }
    state.waiting.set(message.participant, message.role);
    renderWaiting();
  }

  function serverError(message) {
    var box = $("[data-call-error]");
    if (box) { box.textContent = t("error_" + message.code) || t("error_generic"); box.hidden = false; }
  }

  function finish(reason) {
    if (state.phase === "finished") { return; }
    state.phase = "finished";
    state.finished = true;
    state.peers.forEach(function (peer) { peer.pc.close(); });
    state.peers.clear();
    releaseMedia();
    if (state.screen) { state.screen.getTracks().forEach(function (track) { track.stop(); }); }
    recordingClose();
    show("[data-call-waiting]", false);
    show("[data-call-stage]", false);
    var box = $("[data-call-ended]");
    if (box) {
      box.hidden = false;
      box.querySelector("[data-ended-text]").textContent = t("closed_" + reason);
      box.focus();
    }
    status(t("closed_" + reason));
    var remoteList = $("[data-remotes]");
    if (remoteList) { remoteList.textContent = ""; }
    state.chatOnlyTiles.clear();
  }

  // --- the waiting list (practitioners) ---

  function renderWaiting() {
    var list = $("[data-waiting-list]");
    if (!list) { return; }
    list.textContent = "";
    show("[data-waiting-empty]", state.waiting.size === 0);
    state.waiting.forEach(function (role, id) {
      var item = document.createElement("li");
      var label = document.createElement("span");
      label.textContent = t("waiting_someone", { role: roleLabel(role) });
      var admit = document.createElement("button");
      admit.type = "button";
      admit.textContent = t("admit");
      admit.addEventListener("click", function () { send("admit", { participant: id }); });
      var decline = document.createElement("button");
      decline.type = "button";
      decline.className = "secondary";
      decline.textContent = t("decline");
      decline.addEventListener("click", function () {
        send("decline", { participant: id });
        state.waiting.delete(id);
        renderWaiting();
      });
      item.append(label, " ", admit, " ", decline);
      list.appendChild(item);
    });
  }

  // --- local media ---

  // The precall check's advice (docs/precall-check.md): "audio" opens the microphone alone. Advice older than
  // two hours (another day's network) or unreadable counts as none.
  function recommendedAudioOnly() {
    try {
      var kept = JSON.parse(window.sessionStorage.getItem("teleconsult.precall.recommendation") || "null");
      return !!kept && kept.recommendation === "audio" && Date.now() - kept.at < 2 * 3600 * 1000;
    } catch (e) { return false; }
  }

  // Opens the camera and microphone once: in the waiting room (the patient sees and hears themselves there, and
  // the call starts with tracks already open) or on entering the call. Everyone asking meanwhile shares the one
  // opening. Without the camera (none, refused, or audio only advised) the microphone alone; without both,
  // nothing (the chat remains). The reason is kept by the error's name for the waiting room's words.
  function startMedia() {
    if (state.media) { return state.media.then(attachLocal); }
    if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
      state.mediaError = "no_media";
      state.mediaErrorName = "unsupported";
      return Promise.resolve(null);
    }
    state.mediaError = null;
    state.mediaErrorName = null;
    var audioOnly = state.audioAdvice;
    var first = audioOnly ? navigator.mediaDevices.getUserMedia({ audio: MEDIA.audio })
      : navigator.mediaDevices.getUserMedia({ audio: MEDIA.audio, video: MEDIA.video(state.facing) })
        .catch(function (error) {
          state.mediaError = "no_camera";
          state.mediaErrorName = error && error.name;
          return navigator.mediaDevices.getUserMedia({ audio: MEDIA.audio });
        });
    var opening = first
      .catch(function (error) {
        state.mediaError = "no_media";
        state.mediaErrorName = error && error.name;
        return null;
      })
      .then(function (stream) {
        if (state.media !== opening || state.phase === "finished") {
          // Released (the page left the waiting room) while the browser was still asking: not kept.
          if (stream) { stream.getTracks().forEach(function (track) { track.stop(); }); }
          return null;
        }
        state.local = stream;
        if (audioOnly && stream) { state.cameraOff = true; }
        var track = audioTrack();
        if (track) { track.enabled = !state.muted; }
        track = videoTrack();
        if (track) { track.enabled = !state.cameraOff; }
        if (state.mediaError) { notice(t(state.mediaError)); }
        updateButtons();
        return stream;
      });
    state.media = opening;
    return opening.then(attachLocal);
  }

  function attachLocal(stream) {
    var video = $("[data-local-video]");
    if (video && stream && video.srcObject !== stream) { video.srcObject = stream; }
    if (video) { video.toggleAttribute("data-mirrored", state.facing === "user"); }
    return stream;
  }

  // Stops the tracks (the camera's light goes out) and the level meter.
  function releaseMedia() {
    if (state.local) { state.local.getTracks().forEach(function (track) { track.stop(); }); }
    state.local = null;
    state.media = null;
    previewMeterStop();
    var box = $("[data-preview-video]");
    if (box) { box.srcObject = null; }
  }

  // --- the waiting room's self-view (patients) ---
  // The camera and microphone open while the patient waits: a mirrored picture, a level meter, and mute /
  // camera off, which stay as chosen when the call starts. Nothing leaves the page before "admitted": the
  // tracks only feed the preview (no connection to anyone exists until then).

  function preview() {
    if (!$("[data-preview]") || state.phase !== "waiting") { return; }
    state.preview.released = false;
    show("[data-preview]", true);
    if (state.chatOnly) {
      // Nothing to preview: the camera could open, but nothing it shows could reach anyone.
      ["[data-preview-tile]", "[data-preview-meter]", "[data-preview-controls]"].forEach(function (part) {
        show(part, false);
      });
      previewSay("chat_only_waiting", true);
      return;
    }
    previewSay("preview_starting", false);
    startMedia().then(function (stream) {
      if (state.phase !== "waiting" || state.preview.released) { return; }
      var video = $("[data-preview-video]");
      if (video) {
        video.srcObject = stream && stream.getVideoTracks().length ? stream : null;
        var played = video.srcObject ? video.play() : null;
        if (played && played.catch) { played.catch(function () {}); }
      }
      previewMeterStart(stream);
      previewShow();
    });
  }

  function previewSay(key, error) {
    var el = $("[data-preview-status]");
    if (!el) { return; }
    el.textContent = key ? t(key) : "";
    el.classList.toggle("message-error", !!error);
  }

  // What the waiting room says of the devices: ready, the camera off, audio only advised, or why not.
  function previewShow() {
    var box = $("[data-preview]");
    if (!box) { return; }
    var camera = !!videoTrack() && !state.cameraOff;
    box.toggleAttribute("data-camera-off", !camera);
    show("[data-preview-retry]", !!state.mediaError);
    // Only what there is: no picture without a camera opened (unless the person turned it off), no meter or
    // mute without a microphone, no camera button where the camera failed ("Intentar de nuevo" instead).
    show("[data-preview-tile]", !!videoTrack());
    show("[data-preview-meter]", !!audioTrack());
    show('[data-preview] [data-action="mute"]', !!audioTrack());
    show('[data-preview] [data-action="camera"]', !!videoTrack() || !state.mediaError);
    var denied = state.mediaErrorName === "NotAllowedError" || state.mediaErrorName === "SecurityError";
    if (state.mediaError === "no_media") {
      previewSay(denied ? "preview_denied" : "preview_no_devices", true);
    } else if (state.mediaError === "no_camera") {
      previewSay(denied ? "preview_camera_denied" : "preview_no_camera", true);
    } else if (!videoTrack()) {
      previewSay("preview_audio_advised", false);
    } else {
      previewSay(camera ? "preview_ready" : "preview_camera_off", false);
    }
    var caption = $("[data-preview-caption]");
    if (caption) { caption.textContent = t(camera ? "preview_caption" : "peer_no_video"); }
  }

  // The microphone's level, ten times a second, from an AnalyserNode (RMS of the waveform, scaled for speech).
  function previewMeterStart(stream) {
    previewMeterStop();
    var meter = $("[data-preview-level]");
    var Context = window.AudioContext || window.webkitAudioContext;
    if (!meter || !stream || !stream.getAudioTracks().length || !Context) { return; }
    var context;
    try { context = new Context(); } catch (e) { return; }
    var analyser = context.createAnalyser();
    analyser.fftSize = 1024;
    context.createMediaStreamSource(stream).connect(analyser);
    var samples = new Float32Array(analyser.fftSize);
    // Some browsers hold an audio context until a tap: the first one anywhere on the page starts it.
    function wake() { if (context.state === "suspended") { context.resume().catch(function () {}); } }
    wake();
    document.addEventListener("pointerdown", wake);
    document.addEventListener("keydown", wake);
    var timer = window.setInterval(function () {
      analyser.getFloatTimeDomainData(samples);
      var sum = 0;
      for (var i = 0; i < samples.length; i += 1) { sum += samples[i] * samples[i]; }
      var level = Math.sqrt(sum / samples.length);
      var track = audioTrack();
      meter.value = track && track.enabled ? Math.min(1, level * 4) : 0;
    }, 100);
    state.preview.meter = { context: context, timer: timer, wake: wake };
  }

  function previewMeterStop() {
    var meter = state.preview.meter;
    if (!meter) { return; }
    window.clearInterval(meter.timer);
    document.removeEventListener("pointerdown", meter.wake);
    document.removeEventListener("keydown", meter.wake);
    meter.context.close().catch(function () {});
    state.preview.meter = null;
    var el = $("[data-preview-level]");
    if (el) { el.value = 0; }
  }

  // Turning the camera on where none was opened (audio only advised, or refused before): asked for now, alone.
  function openCamera() {
    if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) { return Promise.reject(new Error("none")); }
    return navigator.mediaDevices.getUserMedia({ video: MEDIA.video(state.facing) }).then(function (stream) {
      var track = stream.getVideoTracks()[0];
      state.audioAdvice = false;  // the person chose the camera: a reopening opens it too
      if (!state.local) { state.local = new MediaStream(); state.media = Promise.resolve(state.local); }
      state.local.addTrack(track);
      state.mediaError = state.mediaError === "no_camera" ? null : state.mediaError;
      // In the call, a connection without a picture sender gets one (perfect negotiation offers it).
      state.peers.forEach(function (peer) {
        if (peer.videoSender) { peer.videoSender.replaceTrack(outgoingVideo()).catch(function () {}); }
        else { peer.videoSender = peer.pc.addTrack(track, state.local); }
      });
      attachLocal(state.local);
      return track;
    });
  }

  function liveTrack(track) { return !!track && track.readyState === "live"; }
  function videoTrack() { return state.local ? state.local.getVideoTracks()[0] || null : null; }
  function audioTrack() { return state.local ? state.local.getAudioTracks()[0] || null : null; }

  function videoSenders() {
    var senders = [];
    state.peers.forEach(function (peer) {
      peer.pc.getSenders().forEach(function (sender) {
        if (sender.track ? sender.track.kind === "video" : sender === peer.videoSender) { senders.push(sender); }
      });
    });
    return senders;
  }

  // What goes out as video: nothing in audio-only or with the camera off, else the screen or the camera.
  function outgoingVideo() {
    // While trying whether the link carries video again (state.probing), it is sent though the modality is audio.
    if ((state.modality !== "video" && !state.probing) || state.cameraOff) { return null; }
    if (state.screen) { return state.screen.getVideoTracks()[0]; }
    return videoTrack();
  }

  function applyVideo() {
    var track = outgoingVideo();
    videoSenders().forEach(function (sender) { sender.replaceTrack(track).catch(function () {}); });
    // The recorder gets what the others get: another camera, the screen, or no picture in audio-only.
    recordingFollow(track);
    var stage = $("[data-call-stage]");
    if (stage) { stage.setAttribute("data-modality", state.modality); }
    updateButtons();
  }

  function publishMediaState() {
    if (state.chatOnly) {
      // `auto`: the browser decided, not a person; the others do not follow it (see remoteMediaState).
      send("media_state", { audio: false, video: false, modality: "chat", auto: true });
      return;
    }
    send("media_state", { audio: !state.muted && audioTrack() !== null, video: state.modality === "video" && outgoingVideo() !== null,
      screen: !!state.screen,
      modality: state.modality, auto: state.modalityAuto });
  }

  function setModality(modality, why) {
    // A page by chat only stays so whatever a host chooses: it has no media to switch.
    if (state.modality === modality || state.chatOnly) { return; }
    state.modality = modality;
    // Whether this page's link chose the modality (a step down or up) rather than a person: the others follow
    // a host's choice, never a host's link (see remoteMediaState).
    state.modalityAuto = why === "auto";
    state.probing = false;  // a try of video (see stepDownOrUp) ends with any change of the modality
    applyVideo();
    publishMediaState();
    notice(t(modality === "audio" ? "audio_only_" + why : "video_back"));
  }

  function toggleMute() {
    state.muted = !state.muted;
    var track = audioTrack();
    if (track) { track.enabled = !state.muted; }
    updateButtons();
    previewShow();
    if (state.phase === "call") { publishMediaState(); }
  }

  function toggleCamera() {
    if (state.cameraOff && !videoTrack()) {
      // No camera open yet: ask for it; it stays off if it cannot open.
      openCamera().then(function () { toggleCamera(); }, function () {
        notice(t("no_camera_on"));
        previewSay("no_camera_on", true);
      });
      return;
    }
    state.cameraOff = !state.cameraOff;
    var track = videoTrack();
    if (track) { track.enabled = !state.cameraOff; }
    var box = $("[data-preview-video]");
    if (box && state.phase === "waiting" && state.local && box.srcObject !== state.local) {
      box.srcObject = state.local;
    }
    applyVideo();
    previewShow();
    if (state.phase === "call") { publishMediaState(); }
  }

  // Sensors some phones and laptops list as cameras though they give no picture for a call: depth and
  // time-of-flight sensors, and the infrared cameras of face unlock / Windows Hello (WebRTC does not even encode
  // a depth sensor's 16-bit frames). Told apart by their label, and by what the browser reports the device can
  // do where it does (InputDeviceInfo.getCapabilities): a depth kind, depth ranges, or a frame too small for
  // a call (such sensors report 240×180 and the like).
  var NOT_A_CAMERA = /depth|infra-?red|\bIR\b|\bToF\b|time.of.flight|profundidad|infrarroj/i;
  var MIN_CAMERA = { width: 320, height: 240 };

  function capabilitiesOf(device) {
    try { return typeof device.getCapabilities === "function" ? device.getCapabilities() || {} : {}; }
    catch (e) { return {}; }
  }

  function callCameras(devices) {
    return devices.filter(function (device) {
      if (device.kind !== "videoinput" || NOT_A_CAMERA.test(device.label || "")) { return false; }
      var caps = capabilitiesOf(device);
      if (caps.videoKind === "depth" || caps.videoKind === "infrared" || caps.depthNear || caps.depthFar) {
        return false;
      }
      var small = caps.width && caps.height && caps.width.max < MIN_CAMERA.width && caps.height.max < MIN_CAMERA.height;
      return !small;
    });
  }

  // Which way a listed camera faces, if it says: its capabilities, else its label (Android: "facing back",
  // Safari: "Back Camera", or "Cámara trasera" in Spanish).
  function facingOf(device) {
    var modes = capabilitiesOf(device).facingMode || [];
    if (modes.length) { return modes[0]; }
    var label = device.label || "";
    if (/back|rear|environment|trasera|posterior/i.test(label)) { return "environment"; }
    if (/front|user|frontal|delantera/i.test(label)) { return "user"; }
    return null;
  }

  function switchCamera() {
    var next = state.facing === "user" ? "environment" : "user";
    var current = videoTrack();
    var settings = current && current.getSettings ? current.getSettings() : {};
    function install(fresh, facing) {
      var old = videoTrack();
      if (old) { state.local.removeTrack(old); old.stop(); }
      state.local.addTrack(fresh);
      state.facing = facing;
      fresh.enabled = !state.cameraOff;
      applyVideo();
    }
    navigator.mediaDevices.enumerateDevices().then(function (devices) {
      var cameras = callCameras(devices);
      var others = cameras.filter(function (camera) { return camera.deviceId !== settings.deviceId; });
      // No other camera: nothing to switch to (a facing mode is only a preference: the same camera would start
      // again, or a depth sensor facing that way).
      if (others.length === 0) { throw new Error("one camera"); }
      var video = MEDIA.video(next);
      if (settings.facingMode) {
        // A phone's cameras say which way they face: the first camera facing the other way, named by its id so
        // that the browser does not pick a sensor facing that way instead; else the facing mode alone.
        var facing = others.find(function (camera) { return facingOf(camera) === next; });
        if (facing) { video.deviceId = { exact: facing.deviceId }; }
      } else {
        // Cameras that do not say (a laptop's, a USB one) are taken in turn.
        var at = cameras.findIndex(function (camera) { return camera.deviceId === settings.deviceId; });
        video.deviceId = { exact: cameras[(at + 1) % cameras.length].deviceId };
      }
      return navigator.mediaDevices.getUserMedia({ video: video }).catch(function (error) {
        // Many phones cannot hold two cameras open at once (NotReadableError, AbortError): free the current one
        // and ask again; if the other camera still does not open, put the one we had back.
        if (!current || current.readyState !== "live" || error.name === "NotAllowedError") { throw error; }
        current.stop();
        return navigator.mediaDevices.getUserMedia({ video: video }).catch(function (again) {
          var back = MEDIA.video(state.facing);
          if (settings.deviceId) { back.deviceId = { exact: settings.deviceId }; }
          return navigator.mediaDevices.getUserMedia({ video: back }).then(function (stream) {
            install(stream.getVideoTracks()[0], state.facing);
            throw again;
          });
        });
      });
    }).then(function (stream) {
      install(stream.getVideoTracks()[0], next);
    }).catch(function () { notice(t("no_other_camera")); });
  }

  function toggleScreen() {
    if (state.screen) { stopScreen(); return; }
    if (!navigator.mediaDevices.getDisplayMedia) { notice(t("no_screen")); return; }
    navigator.mediaDevices.getDisplayMedia({ video: true }).then(function (stream) {
      state.screen = stream;
      stream.getVideoTracks()[0].addEventListener("ended", stopScreen);
      applyVideo();
      publishMediaState();
    }).catch(function () {});
  }

  function stopScreen() {
    if (!state.screen) { return; }
    state.screen.getTracks().forEach(function (track) { track.stop(); });
    state.screen = null;
    applyVideo();
    publishMediaState();
  }

  function updateButtons() {
    function press(action, pressed, labelKey) {
      // The waiting room's and the call's buttons alike (the patient's page has both).
      root.querySelectorAll('[data-action="' + action + '"]').forEach(function (button) {
        button.setAttribute("aria-pressed", pressed ? "true" : "false");
        if (labelKey) { button.textContent = t(labelKey); }
      });
    }
    press("mute", state.muted, state.muted ? "unmute" : "mute");
    press("camera", state.cameraOff, state.cameraOff ? "camera_on" : "camera_off");
    press("screen", !!state.screen, state.screen ? "screen_stop" : "screen");
    press("audio-only", state.modality === "audio", state.modality === "audio" ? "video_resume" : "audio_only");
  }

  function notice(text) {
    var el = $("[data-call-notice]");
    if (el) { el.textContent = text; }
  }

  // --- the call and its connections ---

  function enterCall(peers) {
    if (state.phase === "finished") { return Promise.resolve(); }
    state.phase = "call";
    show("[data-call-waiting]", false);
    previewMeterStop();
    var box = $("[data-preview-video]");
    if (box) { box.srcObject = null; }
    show("[data-call-stage]", true);
    status(t("in_call"));
    // The patient's page was the waiting room until now: its heading and title say so no longer.
    var heading = document.querySelector("[data-call-heading]");
    if (heading) { heading.textContent = t("call_heading"); document.title = t("call_heading"); }
    if (state.chatOnly) { return enterChatOnly(peers); }
    return startMedia().then(function () {
      var present = new Set();
      (peers || []).forEach(function (peer) {
        present.add(peer.participant);
        state.roles.set(peer.participant, peer.role);
        // Entering a call: those already in it offer (they hear peer_joined), so offering too would only cross.
        if (!state.peers.has(peer.participant) && !chatOnlyPeer(peer.participant)) {
          connectPeer(peer.participant, true);
        }
      });
      state.peers.forEach(function (peer, id) { if (!present.has(id)) { dropPeer(id); } });
      state.chatOnlyTiles.forEach(function (tile, id) { if (!present.has(id)) { chatOnlyTileRemove(id); } });
      updateButtons();
      publishMediaState();
    });
  }

  function peerJoined(message) {
    state.roles.set(message.participant, message.role);
    if (state.waiting.delete(message.participant)) { renderWaiting(); }
    if (state.phase !== "call") { return undefined; }
    // One who said they take part by chat only gets no connection (their media_state may come before or after
    // this; one back from a browser with WebRTC says so, and remoteMediaState connects then).
    if (state.chatOnly || chatOnlyPeer(message.participant)) {
      if (chatOnlyPeer(message.participant)) { chatOnlyTileShow(message.participant); }
      publishMediaState();
      return undefined;
    }
    return startMedia().then(function () {
      var peer = state.peers.get(message.participant);
      // Back within the server's grace after a blip of its websocket (`resumed`): the connection between us
      // never stopped, and the page that came back restarts ICE on it itself (after its welcome); a restart from
      // here too would only cross it. Unless ours is in trouble meanwhile.
      if (peer && message.resumed && peer.pc.connectionState === "connected") { return publishMediaState(); }
      // The other one came back later: a websocket reconnect keeps its connection (a new ICE path is enough);
      // a reload does not, and its answer to our restart comes with new keys: ours is replaced (see description()).
      if (peer) { peer.pc.restartIce(); } else { connectPeer(message.participant); }
      publishMediaState();
    });
  }

  function peerLeft(id) {
    if (state.waiting.delete(id)) { renderWaiting(); }
    dropPeer(id);
    chatOnlyTileRemove(id);
  }

  function dropPeer(id) {
    var peer = state.peers.get(id);
    if (!peer) { return; }
    if (peer.pc.remoteDescription) { state.dropped.set(id, fingerprint(peer.pc.remoteDescription.sdp)); }
    peer.pc.close();
    if (peer.tile) { peer.tile.remove(); }
    state.peers.delete(id);
  }

  function connectPeer(id, awaitOffer) {
    var pc = new RTCPeerConnection({ iceServers: state.iceServers, iceTransportPolicy: state.iceTransportPolicy });
    // Perfect negotiation: the lower participant id gives way when both sides offer at once.
    state.serial += 1;
    var peer = { id: id, serial: state.serial, pc: pc, polite: state.me < id, makingOffer: false, ignoreOffer: false, tile: null,
      videoSender: null, framesDecoded: 0, lastLost: 0, lastReceived: 0, restartTimer: null,
      awaitOffer: !!awaitOffer };
    state.peers.set(id, peer);
    if (state.local) {
      state.local.getTracks().forEach(function (track) {
        var sender = pc.addTrack(track, state.local);
        if (track.kind === "video") { peer.videoSender = sender; }
      });
      if (peer.videoSender && outgoingVideo() !== videoTrack()) {
        peer.videoSender.replaceTrack(outgoingVideo()).catch(function () {});
      }
    }
    pc.onnegotiationneeded = function () {
      // Its tracks join the m-lines of the offer that is coming; an offer of ours would cross it.
      if (peer.awaitOffer && !pc.remoteDescription) { return; }
      peer.makingOffer = true;
      pc.setLocalDescription().then(function () {
        send("offer", { to: id, sdp: pc.localDescription.sdp });
      }).catch(function () {}).then(function () { peer.makingOffer = false; });
    };
    pc.onicecandidate = function (event) {
      var fields = { to: id, candidate: event.candidate ? event.candidate.candidate : "" };
      if (event.candidate) {
        if (event.candidate.sdpMid !== null) { fields.sdpMid = event.candidate.sdpMid; }
        if (event.candidate.sdpMLineIndex !== null) { fields.sdpMLineIndex = event.candidate.sdpMLineIndex; }
        if (event.candidate.usernameFragment) { fields.usernameFragment = event.candidate.usernameFragment; }
      }
      send("ice", fields);
    };
    // Sound and picture play in elements of their own: a video element whose stream has a picture track that
    // never brings a frame (the other side entered with the camera off, or in audio only) never starts, and its
    // sound would stay silent with it.
    pc.ontrack = function (event) {
      var tile = ensureTile(peer);
      var media = tile.querySelector(event.track.kind === "audio" ? "audio" : "video");
      media.srcObject = new MediaStream([event.track]);
      var played = media.play();
      if (played && played.catch) {
        played.catch(function (error) { if (error && error.name === "NotAllowedError") { soundBlocked(); } });
      }
    };
    pc.onconnectionstatechange = function () {
      if (pc.connectionState === "failed") {
        pc.restartIce();
      } else if (pc.connectionState === "disconnected") {
        // Often a passing hiccup (a Wi-Fi to mobile hand-over): give it a moment before a restart.
        window.clearTimeout(peer.restartTimer);
        peer.restartTimer = window.setTimeout(function () {
          if (pc.connectionState === "disconnected") { pc.restartIce(); }
        }, 3000);
      }
      tileState(peer);
    };
    // An offer can be lost (sent while the websocket was reconnecting, or dropped by a page not yet in the
    // call): a connection still without a remote description after a few seconds asks again.
    // If that does not help, the connection is started over: the other side takes the new offer on a fresh
    // connection too (see description()).
    var ticks = 0;
    peer.watchdog = window.setInterval(function () {
      ticks += 1;
      if (state.peers.get(id) !== peer || pc.connectionState === "closed") {
        window.clearInterval(peer.watchdog);
        return;
      }
      if (pc.connectionState !== "new") {
        window.clearInterval(peer.watchdog);
      } else if (ticks >= 3) {
        window.clearInterval(peer.watchdog);
        dropPeer(id);
        connectPeer(id);
      } else if (peer.makingOffer) {
        return;
      } else if (pc.signalingState === "have-local-offer" && pc.localDescription) {
        send("offer", { to: id, sdp: pc.localDescription.sdp });
      } else if (pc.signalingState === "stable") {
        // No offer came (lost), or the descriptions crossed but ICE never started (no candidate came):
        // a restart offers again with fresh credentials.
        peer.awaitOffer = false;
        pc.restartIce();
      }
    }, 3000);
    ensureTile(peer);
    remoteMediaApply(peer);
    return peer;
  }

  function description(message) {
    // An offer from the other side's connection to one we closed (it restarts ICE after its websocket came
    // back, not knowing we dropped it): the fresh connection we offer instead replaces it over there.
    if (message.type === "offer" && state.dropped.get(message.from) === fingerprint(message.sdp)) { return; }
    if (state.chatOnly || chatOnlyPeer(message.from)) { return; }
    var peer = state.peers.get(message.from);
    if (!peer) {
      if (message.type !== "offer" || state.phase !== "call") { return; }
      peer = connectPeer(message.from, true);
    }
    var pc = peer.pc;
    // An offer with other DTLS keys than the connection we have comes from a new connection on the other side
    // (it dropped ours when our websocket went away, or its page was reloaded): ours can never reach it again,
    // so a fresh one takes the offer at once, collision or not, instead of waiting for the watchdog.
    if (message.type === "offer" && pc.remoteDescription && fingerprint(pc.remoteDescription.sdp) !==
        fingerprint(message.sdp)) {
      return replaceWith(peer, message.sdp);
    }
    // The same for an answer (a reloaded page answers our ICE restart from its fresh connection): start over
    // with a fresh connection of ours, whose offer the other side takes on a fresh one too.
    if (message.type === "answer" && pc.remoteDescription && fingerprint(pc.remoteDescription.sdp) !==
        fingerprint(message.sdp)) {
      dropPeer(peer.id);
      connectPeer(peer.id);
      return;
    }
    var collision = message.type === "offer" && (peer.makingOffer || pc.signalingState !== "stable");
    peer.ignoreOffer = !peer.polite && collision;
    if (peer.ignoreOffer) { return; }
    // setRemoteDescription rolls back our own pending offer by itself when we are the polite one.
    return pc.setRemoteDescription({ type: message.type, sdp: message.sdp }).then(function () {
      if (message.type !== "offer") { return undefined; }
      return pc.setLocalDescription().then(function () {
        send("answer", { to: peer.id, sdp: pc.localDescription.sdp });
      });
    }).catch(function () {
      // An offer our connection cannot take (new m-lines): start over with a fresh connection for that
      // participant and take the offer on it.
      if (message.type === "offer" && state.peers.get(peer.id) === peer) { return replaceWith(peer, message.sdp); }
    });
  }

  function fingerprint(sdp) {
    var match = /^a=fingerprint:(.*)$/m.exec(sdp || "");
    return match ? match[1].trim() : "";
  }

  function replaceWith(peer, offer) {
    dropPeer(peer.id);
    var fresh = connectPeer(peer.id, true);
    return fresh.pc.setRemoteDescription({ type: "offer", sdp: offer })
      .then(function () { return fresh.pc.setLocalDescription(); })
      .then(function () { send("answer", { to: peer.id, sdp: fresh.pc.localDescription.sdp }); })
      .catch(function () {});
  }

  function candidate(message) {
    var peer = state.peers.get(message.from);
    if (!peer) { return; }
    var init = { candidate: message.candidate };
    if (message.sdpMid !== undefined) { init.sdpMid = message.sdpMid; }
    if (message.sdpMLineIndex !== undefined) { init.sdpMLineIndex = message.sdpMLineIndex; }
    if (message.usernameFragment !== undefined) { init.usernameFragment = message.usernameFragment; }
    if (init.sdpMid === undefined && init.sdpMLineIndex === undefined) { init.sdpMLineIndex = 0; }
    return peer.pc.addIceCandidate(init).catch(function () {
      // A candidate of an offer we ignored in a collision is expected to fail.
    });
  }

  function ensureTile(peer) {
    if (peer.tile) { return peer.tile; }
    var tile = document.createElement("figure");
    tile.className = "call-tile";
    tile.setAttribute("data-peer", String(peer.id));
    var video = document.createElement("video");
    video.autoplay = true;
    video.muted = true;  // its sound plays in the audio element below
    video.playsInline = true;
    video.setAttribute("playsinline", "");
    // Started by ontrack's play() alone, not `autoplay` too: a browser that refuses to start it then says so to
    // that call, and the page offers the tap (soundBlocked()).
    var sound = document.createElement("audio");
    var caption = document.createElement("figcaption");
    var name = document.createElement("span");
    name.setAttribute("data-peer-name", "");
    name.textContent = roleLabel(state.roles.get(peer.id) || "participant");
    video.setAttribute("aria-label", t("video_of", { role: name.textContent }));
    var media = document.createElement("span");
    media.setAttribute("data-peer-media", "");
    caption.append(name, " ", media);
    tile.append(video, sound, caption);
    var list = $("[data-remotes]");
    if (list) { list.appendChild(tile); }
    peer.tile = tile;
    return tile;
  }

  function remoteMediaApply(peer) {
    var message = state.remoteMedia.get(peer.id);
    if (!message) { return; }
    peer.remoteAudioOnly = message.modality === "audio";
    peer.remoteNoVideo = !message.video;
    peer.remoteMuted = !message.audio;
    tileState(peer);
  }

  function tileState(peer) {
    if (!peer.tile) { return; }
    var media = peer.tile.querySelector("[data-peer-media]");
    // No picture is coming: hide the last frozen one (the element stays: it plays the sound).
    peer.tile.toggleAttribute("data-no-video", !!(peer.remoteAudioOnly || peer.remoteNoVideo));
    var connection = peer.pc.connectionState;
    if (connection === "connecting" || connection === "new") { media.textContent = t("peer_connecting"); }
    else if (connection === "disconnected" || connection === "failed") { media.textContent = t("peer_reconnecting"); }
    else if (peer.remoteAudioOnly) { media.textContent = t("peer_audio_only"); }
    else if (peer.remoteNoVideo) { media.textContent = t("peer_no_video"); }
    else { media.textContent = peer.remoteMuted ? t("peer_muted") : ""; }
  }

  // What another participant last said of their media. Kept by participant: it can arrive before the connection
  // to them exists (it is not queued behind the negotiation, and a page that had its devices open while waiting
  // says it the moment it is admitted), and the connection made then starts from it.
  function remoteMediaState(message) {
    var wasChatOnly = chatOnlyPeer(message.from);
    state.remoteMedia.set(message.from, message);
    var from = message.from;
    if (chatOnlyPeer(from)) {
      // Their browser makes no connections: ours to them would only offer in vain every few seconds. The tile
      // waits its turn behind the negotiation steps still queued (this page entering the call decides who is
      // present, then their peer_joined), which would otherwise take it away again.
      dropPeer(from);
      state.queue = state.queue.then(function () {
        if (state.phase === "call" && chatOnlyPeer(from)) { dropPeer(from); chatOnlyTileShow(from); }
      }).catch(function () {});
      return;
    }
    chatOnlyTileRemove(from);
    if (wasChatOnly && !state.chatOnly) {
      // Back from a browser that has WebRTC (their peer_joined found them still "chat only"): offer now, in
      // turn with the negotiation. Their page, new in the call, waits for our offer.
      state.queue = state.queue.then(function () {
        if (state.phase !== "call" || state.peers.has(from) || chatOnlyPeer(from)) { return undefined; }
        return startMedia().then(function () {
          if (state.phase === "call" && !state.peers.has(from) && !chatOnlyPeer(from)) { connectPeer(from); }
        });
      }).catch(function () {});
    }
    var peer = state.peers.get(from);
    if (peer) { remoteMediaApply(peer); }
    // A practitioner's choice of audio only (or back to video) holds for the whole visit; their page stepping
    // down on its own poor link does not: each page judges its own link.
    var role = state.roles.get(message.from);
    if ((role === "practitioner" || role === "consulted") && message.modality && !message.auto) {
      state.forced = message.modality === "audio";
      setModality(message.modality, "host");
    }
  }

  // --- sound the browser would not start ---
  // A browser may refuse to start sound that no tap of the person started (Safari on an iPhone whose camera and
  // microphone are not open, a browser set to ask): the others would be heard by nobody, silently. A button
  // asks for the tap; it starts every remote sound and picture of the page, and goes away.

  function soundBlocked() {
    state.soundBlocked = true;
    show("[data-play-sound]", true);
  }

  function playSound() {
    root.querySelectorAll("[data-remotes] audio, [data-remotes] video").forEach(function (media) {
      var played = media.play();
      if (played && played.catch) { played.catch(function () {}); }
    });
    state.soundBlocked = false;
    show("[data-play-sound]", false);
  }

  // --- chat only (a browser without WebRTC) ---

  function chatOnlyPeer(id) {
    var said = state.remoteMedia.get(id);
    return !!said && said.modality === "chat";
  }

  // This page in the call by chat alone: no devices, no connections; the stage keeps the chat and says why.
  function enterChatOnly(peers) {
    state.modality = "chat";
    (peers || []).forEach(function (peer) { state.roles.set(peer.participant, peer.role); });
    $("[data-call-stage]").setAttribute("data-modality", "chat");
    // No picture of oneself, no device buttons, no link quality: none of them would mean anything here.
    root.querySelectorAll('.call-self, [data-quality], [data-call-stage] [data-action="mute"], ' +
      '[data-call-stage] [data-action="camera"], [data-call-stage] [data-action="switch"]').forEach(function (el) {
      el.hidden = true;
    });
    notice(t("chat_only"));
    publishMediaState();
    return Promise.resolve();
  }

  // Another participant in by chat alone: a tile with their role and why there is no picture or sound.
  function chatOnlyTileShow(id) {
    if (state.chatOnlyTiles.has(id)) { return; }
    var tile = document.createElement("figure");
    tile.className = "call-tile call-tile-chat";
    tile.setAttribute("data-peer", String(id));
    tile.setAttribute("data-chat-only", "");
    var caption = document.createElement("figcaption");
    var name = document.createElement("span");
    name.setAttribute("data-peer-name", "");
    name.textContent = roleLabel(state.roles.get(id) || "participant");
    var why = document.createElement("span");
    why.setAttribute("data-peer-media", "");
    why.textContent = t("peer_chat_only");
    caption.append(name, " ", why);
    tile.append(caption);
    var list = $("[data-remotes]");
    if (list) { list.appendChild(tile); }
    state.chatOnlyTiles.set(id, tile);
  }

  function chatOnlyTileRemove(id) {
    var tile = state.chatOnlyTiles.get(id);
    if (tile) { tile.remove(); }
    state.chatOnlyTiles.delete(id);
  }

  // --- chat ---

  function chatShown(message) {
    var log = $("[data-chat-log]");
    if (!log) { return; }
    var item = document.createElement("li");
    var who = message.from === state.me ? t("you") : roleLabel(state.roles.get(message.from) || "participant");
    var when = new Date(message.at);
    var time = document.createElement("time");
    time.dateTime = message.at;
    time.textContent = isNaN(when) ? "" : when.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
    var author = document.createElement("strong");
    author.textContent = who;
    var text = document.createElement("span");
    text.textContent = message.text;
    item.append(time, " ", author, ": ", text);
    log.appendChild(item);
    log.scrollTop = log.scrollHeight;
  }

  // --- recording (VID-8, docs/recording.md) ---
  // Kept apart from the call's own connections: the recorder is one more, send-only connection to the server,
  // negotiated with its own messages (recording_offer → recording_answer) and never part of the mesh.

  var recording = { id: null, kind: null, phase: "idle", askedId: null, pc: null, videoSender: null, retries: 0,
    retriesFor: null };

  function recordingMessage(message) {
    switch (message.type) {
    case "recording_requested": return recordingRequested(message);
    case "recording_agreed": return undefined;
    case "recording_refused": return recordingEnded(message.recording, t("recording_refused"));
    case "recording_started": return recordingStarted(message);
    case "recording_stopped":
      return recordingEnded(message.recording, t("recording_stopped_" + message.reason) || t("recording_stopped_host"));
    case "recording_answer": return recordingAnswer(message);
    case "recording_incomplete": return recordingIncomplete(message);
    default: return undefined;
    }
  }

  function recordingRequested(message) {
    recording.id = message.recording;
    recording.kind = message.kind;
    recording.phase = "requested";
    var kind = t("recording_kind_" + message.kind);
    if ((message.awaiting || []).indexOf(state.me) >= 0) {
      recording.askedId = message.recording;
      var ask = $("[data-recording-ask]");
      if (ask) { ask.textContent = t("recording_prompt", { role: roleLabel(state.roles.get(message.by) || "practitioner"), kind: kind }); }
      show("[data-recording-prompt]", true);
      var agree = root.querySelector('[data-action="recording-agree"]');
      if (agree) { agree.focus(); }
    } else if (message.by === state.me) {
      notice(t("recording_asked", { kind: kind }));
    }
    recordingShow();
  }

  function recordingStarted(message) {
    // After a websocket reconnect the server says it again: a recorder connection that still works is kept
    // (a new one would come too late to be recorded).
    var alive = recording.pc && recording.id === message.recording &&
      ["failed", "closed"].indexOf(recording.pc.connectionState) < 0;
    recording.id = message.recording;
    recording.kind = message.kind;
    recording.phase = "recording";
    show("[data-recording-prompt]", false);
    recordingShow();
    if (alive || state.chatOnly || (message.participants || []).indexOf(state.me) < 0) { return undefined; }
    return startMedia().then(function () { return recordingConnect(message.recording, message.kind); });
  }

  // Someone joined after the recording started: they are not in it (the file has no stream for them). A host is
  // told, and may stop it and start a new one of the same kind, which includes everyone in the call now.
  function recordingIncomplete(message) {
    if (!isHost() || message.recording !== recording.id || recording.phase !== "recording") { return; }
    var text = $("[data-recording-incomplete-text]");
    if (text) { text.textContent = t("recording_incomplete", { role: roleLabel(message.role || "participant") }); }
    show("[data-recording-incomplete]", true);
  }

  function recordingEnded(id, text) {
    if (recording.id !== null && id !== recording.id) { return; }
    recordingClose();
    recording.id = null;
    recording.phase = "idle";
    show("[data-recording-prompt]", false);
    show("[data-recording-incomplete]", false);
    notice(text);
    recordingShow();
  }

  // The indicator: words in a live region (announced), a dot beside them; and the host's buttons.
  function recordingShow() {
    var el = $("[data-recording-status]");
    if (el) {
      el.setAttribute("data-state", recording.phase);
      el.textContent = recording.phase === "recording" ? t("recording_on_" + recording.kind) : "";
    }
    var busy = recording.phase !== "idle";
    root.querySelectorAll("[data-recording-control]").forEach(function (button) {
      button.hidden = (button.getAttribute("data-recording-control") === "busy") !== busy;
    });
  }

  // One send-only connection to the recorder with what this page sends to the others. Its offer carries every
  // candidate (the recorder takes no trickled ones), so it waits for gathering to finish, 5 s at most.
  function recordingConnect(id, kind) {
    recordingClose();
    var pc = new RTCPeerConnection({ iceServers: state.iceServers });
    recording.pc = pc;
    var audio = audioTrack();
    pc.addTransceiver(audio || "audio", { direction: "sendonly", streams: state.local ? [state.local] : [] });
    if (kind === "video") {
      // Always a picture transceiver in a video recording, even in audio-only: its track follows applyVideo().
      recording.videoSender = pc.addTransceiver(outgoingVideo() || "video",
        { direction: "sendonly", streams: state.local ? [state.local] : [] }).sender;
    }
    // A connection that fails mid-recording (the network changed) is made again, a few times per recording: the
    // recorder puts the new one in the same file.
    pc.addEventListener("connectionstatechange", function () {
      if (pc.connectionState !== "failed" || recording.pc !== pc || recording.id !== id) { return; }
      if (recording.retriesFor !== id) { recording.retriesFor = id; recording.retries = 0; }
      if (recording.retries >= 3) { return; }
      recording.retries += 1;
      recordingConnect(id, kind);
    });
    return pc.setLocalDescription().then(function () {
      if (pc.iceGatheringState === "complete") { return undefined; }
      return new Promise(function (resolve) {
        var timer = window.setTimeout(resolve, 5000);
        pc.addEventListener("icegatheringstatechange", function () {
          if (pc.iceGatheringState === "complete") { window.clearTimeout(timer); resolve(); }
        });
      });
    }).then(function () {
      if (recording.pc === pc && recording.id === id) {
        send("recording_offer", { recording: id, sdp: pc.localDescription.sdp });
      }
    }).catch(function () {});
  }

  function recordingAnswer(message) {
    var pc = recording.pc;
    if (!pc || message.recording !== recording.id || pc.signalingState !== "have-local-offer") { return undefined; }
    return pc.setRemoteDescription({ type: "answer", sdp: message.sdp }).catch(function () {});
  }

  function recordingClose() {
    if (recording.pc) { recording.pc.close(); recording.pc = null; }
    recording.videoSender = null;
  }

  function recordingFollow(track) {
    if (recording.videoSender && recording.pc && recording.pc.connectionState !== "closed") {
      recording.videoSender.replaceTrack(track).catch(function () {});
    }
  }

  // The host's buttons and the other staff's answer; true when the action was a recording one.
  function recordingAction(action) {
    if (action === "record-video" || action === "record-audio") {
      send("recording_start", { kind: action === "record-video" ? "video" : "audio" });
    } else if (action === "record-stop") {
      send("recording_stop");
    } else if (action === "record-again") {
      // Handled in this order by the server: the recording stops, then a new one of the same kind is asked for.
      show("[data-recording-incomplete]", false);
      if (recording.phase === "recording" && recording.kind) {
        send("recording_stop");
        send("recording_start", { kind: recording.kind });
      }
    } else if (action === "recording-agree" || action === "recording-refuse") {
      if (recording.askedId) { send(action === "recording-agree" ? "recording_agree" : "recording_refuse", { recording: recording.askedId }); }
      recording.askedId = null;
      show("[data-recording-prompt]", false);
    } else {
      return false;
    }
    return true;
  }

  function recordingVideoSource() {
    var track = recording.videoSender ? recording.videoSender.track : null;
    if (!track) { return null; }
    return state.screen && state.screen.getVideoTracks()[0] === track ? "screen" : "camera";
  }

  // Packets sent to the recorder so far, by kind.
  function recordingSent() {
    var sent = { audio: 0, video: 0 };
    if (!recording.pc) { return Promise.resolve(sent); }
    return recording.pc.getStats().then(function (report) {
      report.forEach(function (entry) {
        if (entry.type === "outbound-rtp" && entry.kind in sent) { sent[entry.kind] += entry.packetsSent || 0; }
      });
      return sent;
    }).catch(function () { return sent; });
  }

  function recordingStats() {
    return { phase: recording.phase, id: recording.id, kind: recording.kind,
      connection: recording.pc ? recording.pc.connectionState : null,
      // What the recorder is sent as a picture: "camera", "screen", or null (audio-only, no camera, audio recording).
      video: recordingVideoSource(),
      videoLabel: recording.videoSender && recording.videoSender.track ? recording.videoSender.track.label : null,
      indicator: ($("[data-recording-status]") || {}).textContent || "" };
  }

  // --- quality (getStats) ---

  function sample(peer) {
    return peer.pc.getStats().then(function (report) {
      var result = { rtt: null, loss: null, bitrate: null, framesDecoded: 0, audioEnergy: 0, bytesReceived: 0 };
      var lost = 0, received = 0, outLoss = 0, outRtt = 0;
      report.forEach(function (entry) {
        if (entry.type === "candidate-pair" && entry.nominated && entry.state === "succeeded") {
          if (entry.currentRoundTripTime !== undefined) { result.rtt = entry.currentRoundTripTime; }
          if (entry.availableOutgoingBitrate !== undefined) { result.bitrate = entry.availableOutgoingBitrate / 1000; }
        } else if (entry.type === "remote-inbound-rtp" && (entry.kind === "audio" || outgoingVideo() !== null)) {
          // What the other side reports of our media (RTCP): the loss and delay of what we send, which a try of
          // video on a narrow link shows first. (Not the video's while none is sent: its last report stays.)
          if (entry.fractionLost !== undefined) { outLoss = Math.max(outLoss, entry.fractionLost); }
          if (entry.roundTripTime !== undefined) { outRtt = Math.max(outRtt, entry.roundTripTime); }
        } else if (entry.type === "inbound-rtp") {
          lost += entry.packetsLost || 0;
          received += entry.packetsReceived || 0;
          result.bytesReceived += entry.bytesReceived || 0;
          if (entry.kind === "video") { result.framesDecoded += entry.framesDecoded || 0; }
          if (entry.kind === "audio") { result.audioEnergy += entry.totalAudioEnergy || 0; }
        }
      });
      var newLost = lost - peer.lastLost, newReceived = received - peer.lastReceived;
      if (newLost + newReceived > 0) { result.loss = Math.max(0, newLost) / (newLost + newReceived); }
      if (outLoss > 0) { result.loss = Math.max(result.loss || 0, outLoss); }
      if (outRtt > 0) { result.rtt = Math.max(result.rtt || 0, outRtt); }
      peer.lastLost = lost;
      peer.lastReceived = received;
      peer.framesDecoded = result.framesDecoded;
      return result;
    });
  }

  function grade(s) {
    if ((s.rtt !== null && s.rtt > POOR.rtt) || (s.loss !== null && s.loss > POOR.loss)) { return "poor"; }
    // The available bitrate only says something while video is being sent (audio alone never probes higher).
    var video = outgoingVideo() !== null;
    if (video && s.bitrate !== null && s.bitrate < POOR.bitrate) { return "poor"; }
    if ((s.rtt !== null && s.rtt > FAIR.rtt) || (s.loss !== null && s.loss > FAIR.loss)) { return "fair"; }
    if (video && s.bitrate !== null && s.bitrate < FAIR.bitrate) { return "fair"; }
    return "good";
  }

  var RANK = { good: 0, fair: 1, poor: 2 };

  function measure() {
    if (state.phase !== "call" || state.peers.size === 0) { return; }
    var peers = Array.from(state.peers.values()).filter(function (p) { return p.pc.connectionState === "connected"; });
    if (peers.length === 0) { return; }
    Promise.all(peers.map(sample)).then(function (samples) {
      var worst = "good", summary = null;
      samples.forEach(function (s) {
        var level = grade(s);
        if (RANK[level] >= RANK[worst]) { worst = level; summary = s; }
      });
      state.quality = Object.assign({ level: worst }, summary);
      showQuality(worst);
      stepDownOrUp(worst, summary);
    }).catch(function () {});
  }

  function showQuality(level) {
    var el = $("[data-quality]");
    if (!el) { return; }
    el.setAttribute("data-level", level);
    // An icon and words: the level never depends on colour alone.
    var icons = { good: "▮▮▮", fair: "▮▮▯", poor: "▮▯▯" };
    el.querySelector("[data-quality-icon]").textContent = icons[level];
    el.querySelector("[data-quality-text]").textContent = t("quality_" + level);
  }

  // When to step down to audio only and back up, from the quality samples alone (no page state: the test hook
  // exposes it and tests run it on made-up sample series). `mode` is "video", "audio" (stepped down by the link:
  // may come back) or "held" (audio only by a person's choice: never comes back by itself). next() returns
  // "down", "probe" (start sending video again, unannounced), "up" (the try worked: announce video), "abort"
  // (the try failed: stop the video again) or null.
  //
  // Why a try: in audio only the link's good figures say little about video. The round trip and the loss of a
  // few audio packets look fine on a link that is simply too narrow for video, and the bandwidth estimate does
  // not grow while only audio is sent. Stepping up on them alone flipped such a link between video and audio
  // every quarter of a minute. So the try measures what matters — round trip, loss and available outgoing
  // bitrate with video actually flowing — before anyone is told, and each failed try (or a step up that does
  // not hold for HOLD_MS) doubles the clean run the next one waits for.
  function QualityPolicy() {
    this.poorRun = 0;
    this.cleanRun = 0;
    this.failures = 0;
    this.trial = null;
    this.upAt = null;
  }
  QualityPolicy.prototype.required = function () {
    return Math.min(STEP_UP_AFTER_MAX, STEP_UP_AFTER * Math.pow(2, this.failures));
  };
  QualityPolicy.prototype.next = function (mode, level, sample, now) {
    var s = sample || {};
    if (mode === "video") {
      this.trial = null;
      this.cleanRun = 0;
      if (this.upAt !== null && now - this.upAt >= HOLD_MS) { this.failures = 0; this.upAt = null; }
      this.poorRun = level === "poor" ? this.poorRun + 1 : 0;
      if (this.poorRun < STEP_DOWN_AFTER) { return null; }
      this.poorRun = 0;
      if (this.upAt !== null) { this.failures += 1; this.upAt = null; }  // stepped up too early
      return "down";
    }
    this.poorRun = 0;
    if (mode !== "audio") { this.trial = null; this.cleanRun = 0; return null; }
    if (this.trial) {
      this.trial.samples += 1;
      this.trial.poor = level === "poor" ? this.trial.poor + 1 : 0;
      this.trial.good = level === "good" ? this.trial.good + 1 : 0;
      var over = this.trial.poor >= TRIAL_POOR || (this.trial.samples >= TRIAL_MAX && level !== "good");
      if (over) { this.trial = null; this.failures += 1; return "abort"; }
      if (this.trial.good < TRIAL_SAMPLES || this.trial.samples < TRIAL_MIN) { return null; }
      this.trial = null;
      this.upAt = now;
      return "up";
    }
    var clean = level === "good" && (s.rtt === null || s.rtt === undefined || s.rtt <= STEP_UP_CLEAN.rtt) &&
      (s.loss === null || s.loss === undefined || s.loss <= STEP_UP_CLEAN.loss);
    this.cleanRun = clean ? this.cleanRun + 1 : 0;
    if (this.cleanRun < this.required()) { return null; }
    this.cleanRun = 0;
    this.trial = { samples: 0, good: 0, poor: 0 };
    return "probe";
  };

  function stepDownOrUp(level, sample) {
    var mode = state.modality === "video" ? "video" : (state.auto && !state.forced ? "audio" : "held");
    var action = state.policy.next(mode, level, sample, Date.now());
    if (state.probing && (mode !== "audio" || action === "abort" || action === "up")) {
      state.probing = false;
      applyVideo();
    }
    if (action === "down") {
      state.auto = true;
      setModality("audio", "auto");
    } else if (action === "probe") {
      state.probing = true;
      applyVideo();
    } else if (action === "up") {
      state.auto = false;
      setModality("video", "auto");
    }
  }

  // --- controls ---

  root.addEventListener("click", function (event) {
    var button = event.target.closest("[data-action]");
    if (!button) { return; }
    var action = button.getAttribute("data-action");
    if (action === "mute") { toggleMute(); }
    else if (action === "camera") { toggleCamera(); }
    else if (action === "switch") { switchCamera(); }
    else if (action === "screen") { toggleScreen(); }
    else if (action === "audio-only") {
      state.forced = state.modality === "video";
      state.auto = false;
      setModality(state.forced ? "audio" : "video", "host");
    } else if (action === "end") { state.finished = true; send("end"); }
    else if (recordingAction(action)) { return; }
    else if (action === "leave") { state.finished = true; send("leave"); finish("left"); }
    else if (action === "preview-retry") { releaseMedia(); preview(); }
    else if (action === "play-sound") { playSound(); }
  });

  var chatForm = $("[data-chat-form]");
  if (chatForm) {
    chatForm.addEventListener("submit", function (event) {
      event.preventDefault();
      var input = chatForm.querySelector("textarea, input[type=text]");
      var text = input.value.trim();
      if (!text) { return; }
      if (send("chat", { text: text.slice(0, 2000) })) { input.value = ""; }
    });
  }

  window.setInterval(measure, 2000);

  // Devices are not held by a page that is gone: leaving the waiting room (or its going into the back/forward
  // cache) stops the tracks, and so does a waiting room hidden for a minute (a phone's other app, its screen
  // off); it opens them again when shown. In the call the tracks stay: the others still hear the patient.
  var HIDDEN_RELEASE_MS = 60000;
  window.addEventListener("pagehide", function () {
    if (state.phase === "call") { return; }
    state.preview.released = true;
    releaseMedia();
  });
  window.addEventListener("pageshow", function (event) {
    if (event.persisted && state.phase === "waiting") { preview(); }
  });
  document.addEventListener("visibilitychange", function () {
    window.clearTimeout(state.preview.hiddenTimer);
    if (state.phase !== "waiting") { return; }
    if (!document.hidden) {
      if (state.preview.released) { preview(); }
      return;
    }
    state.preview.hiddenTimer = window.setTimeout(function () {
      if (!document.hidden || state.phase !== "waiting") { return; }
      state.preview.released = true;
      releaseMedia();
    }, HIDDEN_RELEASE_MS);
  });

  // A debug hook for tests and support: what each connection decodes, and the state of the call.
  window.teleconsultCall = {
    stats: function () {
      var peers = Array.from(state.peers.values());
      return Promise.all(peers.map(function (peer) {
        return sample(peer).then(function (s) {
          return { participant: peer.id, serial: peer.serial, connection: peer.pc.connectionState,
            framesDecoded: s.framesDecoded,
            audioEnergy: s.audioEnergy, bytesReceived: s.bytesReceived, rtt: s.rtt };
        });
      })).then(function (list) {
        return recordingSent().then(function (sent) {
          var recorded = recordingStats();
          recorded.sent = sent;
          var level = $("[data-preview-level]");
          return { phase: state.phase, role: state.role, me: state.me, modality: state.modality,
            welcomes: state.welcomes, quality: state.quality, peers: list, recording: recorded,
            // The open devices and what is sent of them; the waiting room's meter; why a device did not open.
            local: { audio: liveTrack(audioTrack()), video: liveTrack(videoTrack()) },
            sending: { audio: !state.muted && liveTrack(audioTrack()), video: !!outgoingVideo() },
            level: level ? Number(level.value) : null, mediaError: state.mediaErrorName || null,
            // Chat only: this page (no WebRTC here), and the others who said so of theirs.
            chatOnly: state.chatOnly, chatOnlyPeers: Array.from(state.chatOnlyTiles.keys()),
            // Remote sound the browser would not start without a tap (the "Activar el sonido" button shows).
            soundBlocked: state.soundBlocked };
        });
      });
    },
    // The step-down/step-up decision on its own, for tests that feed it sample series (docs/video-network.md).
    QualityPolicy: QualityPolicy,
    // A drop as the network makes it, seen from this side (the server sees the connection go away).
    dropSocket: function () { if (state.ws) { state.ws.close(4000); } }
  };

  status(t("connecting"));
  show("[data-host-only]", IS_HOST_PAGE);
  connect();
}());
