/** Set by build.mjs: true when the bundle speaks the centrifuge-protobuf subprotocol. */
declare const __PROTOBUF__: boolean;

/** Stylesheets are bundled by esbuild into app.css. */
declare module "*.css";
