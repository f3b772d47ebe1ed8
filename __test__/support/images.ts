/**
 * Image fixtures for the Image API tests, made by the real tools users make
 * images with: layers are built by `umoci` from files the test writes into
 * an unpacked bundle, configs are set with `umoci config`, and archives are
 * exported by `skopeo copy`. Only what the tools cannot produce (multi-
 * image docker archives, multi-platform indexes, recompressed layers, and
 * every corrupt input) is written by hand, by editing JSON and blobs of a
 * tool-made layout so that everything else stays valid.
 *
 * Missing tools are an error (`requireTools`), never a reason to skip.
 *
 * This module is the one import path the specs use; the fixtures live in:
 *  - ./tools          the commands, digests and temp directories;
 *  - ./image-build    building with umoci, reading and editing OCI layouts;
 *  - ./image-layers   the stock layer sets the specs share;
 *  - ./image-export   skopeo exports, compressed archives, multi-image and
 *                     multi-platform layouts, recompressed layers;
 *  - ./image-corrupt  corruptors and hand-crafted tars.
 */
export * from './tools'
export * from './image-build'
export * from './image-layers'
export * from './image-export'
export * from './image-corrupt'
