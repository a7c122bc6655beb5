export * from "./common.js";
export * from "./policy.js";
export * from "./addressset.js";
export * from "./report.js";
