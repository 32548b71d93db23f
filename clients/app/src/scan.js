// The camera and the QR decoder (jsqr). A Scanner shows the camera in a <video>, copies frames
// to a canvas a few times a second and hands each decoded text to onText; it keeps scanning
// until stop(), so a code that is not a ticket can be followed by the right one.

import jsQR from 'jsqr';

const FRAME_INTERVAL_MS = 150;  // ~7 decodes a second: quick enough, easy on a phone's battery
const MAX_SIDE = 800;           // frames are scaled down to this before decoding (speed)

export function cameraProblem() {
  if (!globalThis.isSecureContext) {
    return 'The camera only works on a secure page (https, or http://localhost). ' +
      'Open a ticket file or paste the ticket instead.';
  }
  if (!navigator.mediaDevices?.getUserMedia) return 'This browser has no camera access.';
  return null;
}

function cameraErrorWords(error) {
  switch (error?.name) {
    case 'NotAllowedError': return 'The camera was not allowed. Allow it in the browser, or paste the ticket.';
    case 'NotFoundError': return 'No camera was found. Open a ticket file or paste the ticket instead.';
    case 'NotReadableError': return 'The camera is busy in another app.';
    default: return `The camera could not start (${error?.name ?? error}).`;
  }
}

export class Scanner {
  #video; #canvas; #stream = null; #timer = null; #last = '';

  constructor(video, canvas) {
    this.#video = video;
    this.#canvas = canvas;
  }

  // Starts the camera; resolves once frames flow. Rejects with an Error in plain words.
  async start(onText) {
    const problem = cameraProblem();
    if (problem) throw new Error(problem);
    try {
      // The back camera is a preference, not a requirement: some devices report no facing mode.
      this.#stream = await navigator.mediaDevices.getUserMedia(
        { video: { facingMode: { ideal: 'environment' } }, audio: false });
    } catch (error) {
      throw new Error(cameraErrorWords(error));
    }
    this.#video.srcObject = this.#stream;
    await this.#video.play();
    this.#last = '';
    this.#timer = setInterval(() => this.#decode(onText), FRAME_INTERVAL_MS);
  }

  #decode(onText) {
    const video = this.#video;
    if (video.readyState < 2 || !video.videoWidth) return;
    const scale = Math.min(1, MAX_SIDE / Math.max(video.videoWidth, video.videoHeight));
    const w = Math.round(video.videoWidth * scale);
    const h = Math.round(video.videoHeight * scale);
    this.#canvas.width = w;
    this.#canvas.height = h;
    const context = this.#canvas.getContext('2d', { willReadFrequently: true });
    context.drawImage(video, 0, 0, w, h);
    const code = jsQR(context.getImageData(0, 0, w, h).data, w, h, { inversionAttempts: 'attemptBoth' });
    // The same code seen in frame after frame is reported once.
    if (code && code.data && code.data !== this.#last) {
      this.#last = code.data;
      onText(code.data);
    }
  }

  stop() {
    clearInterval(this.#timer);
    this.#timer = null;
    for (const track of this.#stream?.getTracks() ?? []) track.stop();
    this.#stream = null;
    this.#video.srcObject = null;
  }
}
