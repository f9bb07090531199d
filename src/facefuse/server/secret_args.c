/* Secrets for tritonserver's arguments, taken from its environment (LD_PRELOAD).

   tritonserver takes its API keys only as arguments (--grpc-restricted-protocol,
   --http-restricted-api), and any local user can read a process's arguments in
   /proc/PID/cmdline. facefuse starts it with a placeholder "@secret:NAME" in place of
   each key and the key in the environment variable NAME, which only the server's own
   user can read. This constructor runs before main(): it points main's argv at private
   copies with the placeholders filled in (the arguments /proc shows keep the
   placeholders), then wipes the values from the environment block /proc/PID/environ
   shows and removes the variables, so the Python-backend stubs the server starts do
   not inherit them either. A placeholder whose variable is missing or empty stops the
   process: starting with a guessable key would be worse than not starting.

   glibc passes (argc, argv, envp) to ELF constructors; main() gets the same argv. */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MARK "@secret:"
#define MAX_NAMES 16

static int is_name_char(char c) {
    return (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
}

static const char *used_names[MAX_NAMES];
static size_t used_lengths[MAX_NAMES];
static int used_count;

static void remember(const char *name, size_t length) {
    for (int i = 0; i < used_count; i++)
        if (used_lengths[i] == length && strncmp(used_names[i], name, length) == 0) return;
    if (used_count == MAX_NAMES) {
        fprintf(stderr, "facefuse secret_args: more than %d secret names\n", MAX_NAMES);
        _exit(78);
    }
    used_names[used_count] = name;
    used_lengths[used_count++] = length;
}

/* argument with every "@secret:NAME" replaced by the value of NAME (a new string) */
static char *filled(const char *argument) {
    size_t size = strlen(argument) + 1;
    char *out = malloc(size);
    size_t used = 0;
    const char *p = argument;
    while (out && *p) {
        const char *mark = strstr(p, MARK);
        const char *chunk_end = mark ? mark : p + strlen(p);
        size_t chunk = (size_t)(chunk_end - p);
        const char *value = "";
        size_t value_length = 0, name_length = 0;
        if (mark) {
            const char *name = mark + strlen(MARK);
            while (is_name_char(name[name_length])) name_length++;
            char key[256];
            if (name_length == 0 || name_length >= sizeof key) {
                fprintf(stderr, "facefuse secret_args: bad placeholder in an argument\n");
                _exit(78);
            }
            memcpy(key, name, name_length);
            key[name_length] = '\0';
            value = getenv(key);
            if (!value || !*value) {
                fprintf(stderr, "facefuse secret_args: %s is not set; the server will not start without its key\n", key);
                _exit(78);
            }
            value_length = strlen(value);
            remember(name, name_length);
        }
        size_t needed = used + chunk + value_length + 1;
        if (needed > size) {
            size = needed * 2;
            out = realloc(out, size);
            if (!out) break;
        }
        memcpy(out + used, p, chunk);
        used += chunk;
        memcpy(out + used, value, value_length);
        used += value_length;
        p = mark ? mark + strlen(MARK) + name_length : chunk_end;
    }
    if (!out) {
        fprintf(stderr, "facefuse secret_args: out of memory\n");
        _exit(71);
    }
    out[used] = '\0';
    return out;
}

static void wipe_and_unset(char **envp) {
    for (int i = 0; i < used_count; i++) {
        for (char **entry = envp; *entry; entry++) {
            if (strncmp(*entry, used_names[i], used_lengths[i]) == 0 && (*entry)[used_lengths[i]] == '=') {
                char *value = *entry + used_lengths[i] + 1;
                memset(value, 0, strlen(value));
            }
        }
        char name[256];
        memcpy(name, used_names[i], used_lengths[i]);
        name[used_lengths[i]] = '\0';
        unsetenv(name);
    }
    unsetenv("LD_PRELOAD");
}

__attribute__((constructor)) static void facefuse_fill_secret_args(int argc, char **argv, char **envp) {
    if (!argv || !envp) return;
    for (int i = 1; i < argc; i++)
        if (strstr(argv[i], MARK)) argv[i] = filled(argv[i]);
    if (used_count) wipe_and_unset(envp);
    else unsetenv("LD_PRELOAD");
}
