// `node --import ./register.mjs <cli>`: installs hooks.mjs before the CLI loads.
import { register } from "node:module";
register("./hooks.mjs", import.meta.url);
