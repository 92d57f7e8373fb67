// Voice calls on the alarm page (docs/voice.md). The browser's own WebRTC talks to the
// hub's speakerphone; the server only carries one SDP each way (non-trickle: ICE gathering
// completes before an SDP is sent) and the call's state. The state is fetched when the
// console's live feed (Server-Sent Events, the queue's: every call change is an alarm
// change) says something changed, and on (re)connecting to it; while the feed is down it
// is fetched every FALLBACK_MS. #call[data-feed] says which ("on" / "off"). Words are in
// the page (spans shown by #call[data-state] and [data-reason]), none here.
(function () {
  "use strict";
  var panel = document.getElementById("call");
  if (!panel) return;
  var stateUrl = panel.dataset.url; // GET state, POST = call the home
  var callsUrl = panel.dataset.calls; // + ID + "/answer" | "/hangup"
  var eventsUrl = panel.dataset.events; // the console's live feed
  var csrf = panel.dataset.csrf;
  var audio = document.getElementById("call-audio");
  var ring = document.getElementById("call-ring");
  var CONNECT_MS = 10000; // a call that cannot connect tells the operator within 10 s
  var LOST_MS = 5000; // a dropped path ends the call
  var FALLBACK_MS = 5000; // the state's fetch while the live feed is down
  var FAILED = ["no_connection", "network_lost", "refused", "no_answer", "hub_busy"];
  var pc = null;
  var callId = null;
  var remoteSet = false;
  var connected = false;
  var config = { ice_servers: [], ice_policy: "all" };
  var connectTimer = null;
  var lostTimer = null;
  var latest = null;

  function show(state, reason) {
    panel.dataset.state = state;
    panel.dataset.reason = reason || "";
    var failed = state === "ended" && FAILED.indexOf(reason) >= 0;
    panel.classList.toggle("failed", failed);
    if (state === "ringing") ring.play().catch(function () {});
    else { ring.pause(); ring.currentTime = 0; }
  }

  function post(url, fields) {
    var body = new FormData();
    body.append("csrf_token", csrf);
    Object.keys(fields).forEach(function (k) { body.append(k, fields[k]); });
    return fetch(url, { method: "POST", body: body, credentials: "same-origin" });
  }

  function gathered(conn) { // non-trickle: every candidate in the SDP (5 s at most)
    return new Promise(function (resolve) {
      if (conn.iceGatheringState === "complete") return resolve();
      var done = function () { if (conn.iceGatheringState === "complete") resolve(); };
      conn.addEventListener("icegatheringstatechange", done);
      setTimeout(resolve, 5000);
    });
  }

  function tap(stream) { // tests only: the peak frequency of what the operator hears
    if (!window.CAREHUB_TAP) return;
    var ctx = new AudioContext();
    ctx.resume();
    var analyser = ctx.createAnalyser();
    analyser.fftSize = 8192;
    ctx.createMediaStreamSource(stream).connect(analyser);
    var bins = new Float32Array(analyser.frequencyBinCount);
    window.carehubPeaks = [];
    setInterval(function () {
      analyser.getFloatFrequencyData(bins);
      var best = 0;
      for (var i = 1; i < bins.length; i++) if (bins[i] > bins[best]) best = i;
      if (bins[best] > -70) window.carehubPeaks.push(best * ctx.sampleRate / analyser.fftSize);
    }, 200);
  }

  function closeLocal() {
    clearTimeout(connectTimer);
    clearTimeout(lostTimer);
    if (pc) {
      pc.getSenders().forEach(function (s) { if (s.track) s.track.stop(); });
      pc.close();
    }
    pc = null;
    callId = null; // the next call is another one (its id comes with it)
    remoteSet = false;
    connected = false;
    audio.srcObject = null;
  }

  function endHere(reason) {
    var id = callId;
    closeLocal();
    show("ended", reason);
    if (id) post(callsUrl + id + "/hangup", { reason: reason }).catch(function () {});
  }

  async function newPc() {
    var conn = new RTCPeerConnection({
      iceServers: config.ice_servers,
      iceTransportPolicy: config.ice_policy,
    });
    var mic = await navigator.mediaDevices.getUserMedia({ audio: true });
    mic.getTracks().forEach(function (t) { conn.addTrack(t, mic); });
    conn.ontrack = function (e) {
      var stream = e.streams[0] || new MediaStream([e.track]);
      audio.srcObject = stream; // WebAudio stays silent without a playing element
      audio.play().catch(function () {});
      tap(stream);
    };
    conn.onconnectionstatechange = function () {
      if (conn !== pc) return;
      var s = conn.connectionState;
      if (s === "connected") {
        connected = true;
        clearTimeout(connectTimer);
        clearTimeout(lostTimer);
        show("talking");
      } else if (s === "failed") {
        endHere(connected ? "network_lost" : "no_connection");
      } else if (s === "disconnected") {
        lostTimer = setTimeout(function () { if (conn === pc) endHere("network_lost"); }, LOST_MS);
      }
    };
    pc = conn;
    if (window.CAREHUB_TAP) window.carehubPc = conn; // tests read its stats
    connectTimer = setTimeout(function () {
      if (conn === pc && !connected) endHere("no_connection");
    }, CONNECT_MS);
    return conn;
  }

  async function answer() {
    if (!latest || !latest.sdp || pc) return;
    var id = latest.id;
    show("connecting");
    var conn = await newPc();
    callId = id;
    await conn.setRemoteDescription({ type: "offer", sdp: latest.sdp });
    await conn.setLocalDescription(await conn.createAnswer());
    await gathered(conn);
    var r = await post(callsUrl + callId + "/answer", { sdp: conn.localDescription.sdp });
    if (!r.ok) { closeLocal(); show("taken"); }
  }

  async function callHome() {
    if (pc) return;
    show("calling");
    var conn = await newPc();
    await conn.setLocalDescription(await conn.createOffer());
    await gathered(conn);
    var r = await post(stateUrl, { sdp: conn.localDescription.sdp });
    if (!r.ok) { closeLocal(); show("ended", "refused"); return; }
    callId = (await r.json()).call.id;
  }

  async function apply(call) {
    latest = call;
    if (!call) { if (!pc) show("idle"); return; }
    var ours = pc && call.id === callId;
    if (call.state === "ended") {
      if (ours || !pc) { closeLocal(); show("ended", call.end_reason); }
      return;
    }
    if (ours) {
      if (call.state === "answered" && call.direction === "to_home" && call.sdp && !remoteSet) {
        remoteSet = true;
        show("connecting");
        await pc.setRemoteDescription({ type: "answer", sdp: call.sdp });
      }
      return;
    }
    if (pc) return;
    if (call.state === "ringing" && call.direction === "from_home") show("ringing");
    else show("taken");
  }

  // One fetch at a time: a change that arrives meanwhile asks for one more after it (an
  // older answer applied last would show a state already gone).
  var fetching = false;
  var again = false;
  function refresh() {
    if (fetching) { again = true; return; }
    fetching = true;
    again = false;
    fetch(stateUrl, { credentials: "same-origin", cache: "no-store" })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (data) {
        if (!data) return;
        config = { ice_servers: data.ice_servers, ice_policy: data.ice_policy };
        return apply(data.call);
      })
      .catch(function () {})
      .then(function () {
        fetching = false;
        if (again) refresh();
      });
  }

  var fallback = null;
  function feedDown() { // fetch slowly until the feed is back
    panel.dataset.feed = "off";
    if (fallback === null) {
      fallback = setInterval(refresh, FALLBACK_MS);
    }
  }

  function feedUp() {
    panel.dataset.feed = "on";
    if (fallback !== null) { clearInterval(fallback); fallback = null; }
    refresh(); // whatever changed while it was down
  }

  function follow() {
    var source = new EventSource(eventsUrl);
    source.addEventListener("hello", feedUp);
    source.addEventListener("queue", refresh); // an alarm or a call changed
    source.addEventListener("signed-out", function () { source.close(); feedDown(); });
    source.onerror = function () {
      feedDown();
      if (source.readyState === EventSource.CLOSED) { // refused outright: try again later
        setTimeout(follow, FALLBACK_MS);
      }
    };
  }

  document.getElementById("call-answer").addEventListener("click", answer);
  document.getElementById("call-home").addEventListener("click", callHome);
  document.getElementById("call-hangup").addEventListener("click", function () {
    endHere("hangup_console");
  });
  panel.dataset.feed = "off";
  refresh();
  follow();
})();
