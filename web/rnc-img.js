// <rnc-img src="photo.rnc" models="models/">: an .rnc image on a canvas that sharpens as it
// downloads, one frame per complete iteration (rnc.js).
//
// Attributes: src, models (the models folder, default "models/"), strict (a stream cut inside a
// chunk is an error, not its complete iterations). While it loads, `data-iteration` says which
// iteration it shows; it fires `rnc-frame` after each ({ detail: { iteration, iterations } }),
// then `load`, or `error` with the message in `data-error` and on the element.
import { decode } from "./rnc.js";

export class RncImg extends HTMLElement {
  static observedAttributes = ["src", "models"];

  constructor() {
    super();
    this.canvas = document.createElement("canvas");
    this.message = document.createElement("div");
    this.message.setAttribute("part", "message");
    this.attachShadow({ mode: "open" }).append(this.canvas, this.message);
    this.canvas.style.maxWidth = "100%";
    this.controller = null;
    this.result = null;
  }

  connectedCallback() {
    this.load();
  }

  disconnectedCallback() {
    this.controller?.abort();
  }

  attributeChangedCallback() {
    if (this.isConnected) this.load();
  }

  async load() {
    const src = this.getAttribute("src");
    this.controller?.abort();
    if (!src) return;
    const controller = (this.controller = new AbortController());
    const ctx = this.canvas.getContext("2d");
    for (const a of ["data-iteration", "data-error", "data-note", "data-done"]) this.removeAttribute(a);
    this.message.textContent = "";
    try {
      this.result = await decode(fetch(new URL(src, document.baseURI), { signal: controller.signal }), {
        models: new URL(this.getAttribute("models") ?? "models/", document.baseURI).href,
        strict: this.hasAttribute("strict"),
        signal: controller.signal,
        onFrame: ({ image, iteration, iterations }) => {
          if (controller.signal.aborted) return;
          if (this.canvas.width !== image.width || this.canvas.height !== image.height) {
            [this.canvas.width, this.canvas.height] = [image.width, image.height];
          }
          ctx.putImageData(image, 0, 0);
          this.setAttribute("data-iteration", String(iteration));
          this.dispatchEvent(new CustomEvent("rnc-frame", { detail: { iteration, iterations } }));
        },
      });
      if (controller.signal.aborted) return;
      if (this.result.note) {
        this.setAttribute("data-note", this.result.note);
        this.message.textContent = this.result.note;
      }
      this.setAttribute("data-done", String(this.result.iterations));
      this.dispatchEvent(new Event("load"));
    } catch (err) {
      if (controller.signal.aborted) return;
      this.setAttribute("data-error", err.message);
      this.message.textContent = `${err.name ?? "Error"}: ${err.message}`;
      this.dispatchEvent(new CustomEvent("error", { detail: err }));
    }
  }
}

customElements.define("rnc-img", RncImg);
