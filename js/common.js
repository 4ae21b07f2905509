// I2VGen-XL node pack: helpers shared by the extensions (a module of exports only: ComfyUI imports every file of
// the web folder, and this one registers nothing).

// Split `text` into rows no wider than `width` on `ctx`: at spaces, and a word wider than a row (a file path, a
// URL) is broken after "/", "_", "-" or "." where it can be, else anywhere.
export function wrapText(ctx, text, width) {
  const fits = (s) => ctx.measureText(s).width <= width;
  const rows = [];
  let row = "";
  const pushWord = (word) => {
    let rest = word;
    while (!fits(rest)) {
      let cut = rest.length - 1;
      while (cut > 1 && !fits(rest.slice(0, cut))) {
        cut -= 1;
      }
      const soft = Math.max(...["/", "_", "-", "."].map((c) => rest.lastIndexOf(c, cut - 1) + 1));
      const at = soft > cut / 2 ? soft : cut;
      rows.push(rest.slice(0, at));
      rest = rest.slice(at);
    }
    return rest;
  };
  for (const word of String(text).split(" ")) {
    const candidate = row ? `${row} ${word}` : word;
    if (fits(candidate)) {
      row = candidate;
    } else if (fits(word)) {
      rows.push(row);
      row = word;
    } else {
      row = pushWord(candidate); // too long for any row: fill this one and break the word
    }
  }
  if (row) {
    rows.push(row);
  }
  return rows;
}

// The node linked into `node`'s input `inputName`, or null.
export function linkedSource(node, inputName) {
  const input = node.inputs?.find((i) => i.name === inputName);
  if (input?.link == null) {
    return null;
  }
  const link = node.graph?.links?.[input.link] ?? node.graph?.links?.get?.(input.link);
  return link ? node.graph.getNodeById(link.origin_id) : null;
}

// `node`'s widget called `name`, or undefined.
export function widget(node, name) {
  return node.widgets?.find((w) => w.name === name);
}

// The video size an I2VGen-XL Conditioning node will use (nodes/encode.py: size_from_image_latent): its own
// width/height, or with image_latent linked the size of the I2VGen-XL Detail Encode it comes from.
// {linked, width, height}; width/height are null when the linked source's size is not known before a run.
export function conditioningSize(node) {
  const source = linkedSource(node, "image_latent");
  if (!source) {
    return { linked: false, width: widget(node, "width")?.value ?? null, height: widget(node, "height")?.value ?? null };
  }
  if (source.type === "I2VGenXLDetailEncode") {
    return { linked: true, width: widget(source, "width")?.value ?? null, height: widget(source, "height")?.value ?? null };
  }
  return { linked: true, width: null, height: null };
}

// The one mirrored copy of a Python rule: i2vgen_core/sizes.py snap_refiner_size (width to a multiple of 64 with
// halves rounded up; latent height to the nearest value = 2 mod 8, ties to the larger). tests/test_sizes.py runs
// this function under node against the Python over a grid of sizes.
export function snapForRefiner(width, height) {
  const w = Math.max(64, Math.round(width / 64) * 64);
  const target = height / 8;
  let best = null;
  for (let lat = 2; lat <= Math.ceil(target) + 16; lat += 8) {
    const key = Math.abs(lat - target);
    if (best === null || key < best.key || (key === best.key && lat > best.lat)) {
      best = { key, lat };
    }
  }
  return [w, best.lat * 8];
}
