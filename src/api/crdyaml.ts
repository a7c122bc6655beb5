import yaml from "js-yaml";
import { customResourceDefinitions } from "./crd.js";

const HEADER = "# Generated from the zod schemas in src/api by `make crds`. Do not edit.\n";

export function renderCrds(): { file: string; text: string }[] {
  return customResourceDefinitions().map(({ file, object }) => ({
    file,
    text: HEADER + yaml.dump(object, { lineWidth: 120, noRefs: true, sortKeys: false }),
  }));
}
