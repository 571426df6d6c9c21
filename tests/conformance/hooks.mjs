// Module hook: the conformance CLI's `import ... from "fs"` gets fs-shim.mjs on node < 22.
export async function resolve(specifier, context, next) {
  const fromCli = context.parentURL && context.parentURL.includes("/@modelcontextprotocol/conformance/dist/");
  if (fromCli && (specifier === "fs" || specifier === "node:fs")) {
    return { url: new URL("./fs-shim.mjs", import.meta.url).href, shortCircuit: true };
  }
  return next(specifier, context);
}
