// I2VGen-XL node pack: small frontend helpers (no effect on what the graph computes).
//  * gives the pack's nodes one colour so the cascade is easy to follow on the canvas;
//  * on "I2VGen-XL Latent Upscale", shows the size the MS-Vid2Vid-XL refiner will really get when
//    snap_for_refiner is on (width a multiple of 64, latent height = 2 mod 8: 720 stays 720, 704 becomes 720).
import { onRefresh, registerOnce, setInfo, snapForRefiner, widget } from "./common.js";

const EXTENSION_NAME = "I2VGenXL.NodeHelpers";
const NODE_PREFIX = "I2VGenXL";
const COLOR = "#233047";
const BGCOLOR = "#1b2433";

// The refiner-size line of a Latent Upscale node, or null when snap_for_refiner is off or the size is not a size.
export function refinerLine(node) {
  if (!widget(node, "snap_for_refiner")?.value) {
    return null;
  }
  const width = Number(widget(node, "width")?.value);
  const height = Number(widget(node, "height")?.value);
  if (!Number.isFinite(width) || !Number.isFinite(height) || width <= 0 || height <= 0) {
    return null;
  }
  const [w, h] = snapForRefiner(width, height);
  return w === width && h === height
    ? { text: `refiner size ${w}x${h}`, tone: "ok" }
    : { text: `snapped to ${w}x${h} for the refiner`, tone: "warn" };
}

registerOnce({
  name: EXTENSION_NAME,
  nodeCreated(node) {
    if (String(node.comfyClass ?? node.type ?? "").startsWith(NODE_PREFIX)) {
      node.color = node.color ?? COLOR;
      node.bgcolor = node.bgcolor ?? BGCOLOR;
    }
  },
  setup() {
    onRefresh((node) => node.type === "I2VGenXLLatentUpscale", (node) => {
      const line = refinerLine(node);
      setInfo(node, "refiner", line ? [line] : []);
    });
  },
});
