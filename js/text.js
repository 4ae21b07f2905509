// I2VGen-XL node pack: the one text-wrapping rule for what the pack draws on nodes (estimate.js, model_help.js).
// A module of helpers only (ComfyUI imports every file of the web folder; this one registers nothing).

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
