/* File helpers for every C test program: harness.h includes this file, and test_embedder.c, which
   keeps its own checks, includes it alone. */
#ifndef SPECDEC_TEST_FILES_H
#define SPECDEC_TEST_FILES_H

#include <stdio.h>
#include <stdlib.h>

#if defined(__GNUC__)
#define TEST_FILES_FN static __attribute__((unused))
#else
#define TEST_FILES_FN static
#endif

TEST_FILES_FN int write_file(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    int ok;
    if (!f) return 0;
    ok = fwrite(data, 1, n, f) == n;
    return fclose(f) == 0 && ok;
}

/* The whole file (malloc'd; the caller frees it), or NULL with *n = 0. */
TEST_FILES_FN unsigned char *read_file(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    unsigned char *buf;
    long size;
    *n = 0;
    if (!f) return NULL;
    if (fseek(f, 0, SEEK_END) != 0 || (size = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0) {
        fclose(f);
        return NULL;
    }
    buf = malloc(size > 0 ? (size_t)size : 1);
    if (buf) *n = fread(buf, 1, (size_t)size, f);
    fclose(f);
    return buf;
}

#endif
