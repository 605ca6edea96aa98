// The entry of the Chromium test page: the SDK's protobuf build, imported as an app would import it
// (`centrifuge/build/protobuf`), and the shared ops; browser.mjs bundles this with esbuild for the page.
import { Centrifuge } from 'centrifuge/build/protobuf';
import { createDriver } from './ops.mjs';

window.resonanceHandle = createDriver({ Centrifuge, protobuf: true, out: (obj) => window.resonanceEmit(obj) });
