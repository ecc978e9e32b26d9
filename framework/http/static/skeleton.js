// A payload skeleton from a JSON schema (pydantic's model_json_schema): every property
// with its default, or an empty value of its type, so a person fills it in rather than
// typing the field names.

const MAX_DEPTH = 6;

/**
 * An example value for a JSON schema.
 * @param {object} schema the schema
 * @param {object} [root] the document holding "$defs" ("definitions")
 */
export function skeleton(schema, root = schema, depth = 0) {
  if (!schema || typeof schema !== "object" || depth > MAX_DEPTH) return null;
  if ("default" in schema) return structuredClone(schema.default);
  if ("const" in schema) return schema.const;
  if (Array.isArray(schema.enum) && schema.enum.length) return schema.enum[0];
  if (Array.isArray(schema.examples) && schema.examples.length) return schema.examples[0];
  if (typeof schema.$ref === "string") return skeleton(resolve(schema.$ref, root), root, depth + 1);
  for (const key of ["anyOf", "oneOf", "allOf"]) {
    if (Array.isArray(schema[key]) && schema[key].length) {
      const choice = schema[key].find((s) => s && s.type !== "null") ?? schema[key][0];
      return skeleton(choice, root, depth + 1);
    }
  }
  const type = Array.isArray(schema.type) ? schema.type.find((t) => t !== "null") : schema.type;
  switch (type) {
    case "object":
    case undefined: {
      if (type === undefined && !schema.properties) return null;
      const out = {};
      for (const [name, sub] of Object.entries(schema.properties ?? {})) {
        out[name] = skeleton(sub, root, depth + 1);
      }
      return out;
    }
    case "array":
      return [];
    case "string":
      return "";
    case "integer":
    case "number":
      return 0;
    case "boolean":
      return false;
    default:
      return null;
  }
}

function resolve(ref, root) {
  if (!ref.startsWith("#/")) return null;
  let node = root;
  for (const part of ref.slice(2).split("/")) {
    node = node?.[part.replace(/~1/g, "/").replace(/~0/g, "~")];
  }
  return node ?? null;
}
