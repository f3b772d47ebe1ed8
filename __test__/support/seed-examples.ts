/**
 * The code examples of the Image API page (shared/seed), character for
 * character: the seed spec runs them from a project, the package spec from
 * an installed tarball. Keep them exactly as the page prints them.
 */

/** The page's examples, character for character. Those that start without an import get the page's own import line. */
export const IMPORT = 'import { Image } from "microsandbox";\n\n'
export const EXAMPLES = {
  typicalFlow: `import { Image } from "microsandbox";

for (const image of await Image.list()) {
  console.log(image.reference, image.layerCount);
}

const detail = await Image.inspect("python:3.12");
console.log(detail.config?.workingDir);

const report = await Image.prune();
console.log(report.bytesReclaimed);
`,
  get: `const image = await Image.get("python:3.12");
console.log(image.manifestDigest);
`,
  list: `const images = await Image.list();
console.log(images.map((image) => image.reference));
`,
  inspect: `const detail = await Image.inspect("python:3.12");
for (const layer of detail.layers) {
  console.log(layer.position, layer.diffId);
}
`,
  remove: `await Image.remove("old:tag", { force: false });
`,
  prune: `const report = await Image.prune();
console.log(report.imageRefsRemoved, report.bytesReclaimed);
`,
}
export const HEADER = `import { Image, ImageHandle } from "microsandbox";
import type { ImageDetail, ImagePruneReport } from "microsandbox";
`
