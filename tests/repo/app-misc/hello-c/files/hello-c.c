/*
 * hello-c: a test fixture of the Staves project. A dynamically linked C program (libfoo, glibc).
 *
 *   hello-c           prints "Hello from C", the word libfoo gives, and whether the locale of the environment
 *                     (LANG, LC_ALL) was accepted: setlocale() reads the image's locale archive
 *   hello-c --flags   prints the CFLAGS it was compiled with
 */
#include <langinfo.h>
#include <locale.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <foo.h>

#include "flags.h"

int main(int argc, char **argv)
{
	if (argc > 1 && strcmp(argv[1], "--flags") == 0) {
		puts(HELLO_C_CFLAGS);
		return 0;
	}
	if (argc > 1) {
		fprintf(stderr, "usage: hello-c [--flags]\n");
		return 2;
	}
	printf("Hello from C\n");
	printf("libfoo says: %s\n", foo_word());
	const char *wanted = getenv("LC_ALL");
	if (wanted == NULL || *wanted == '\0')
		wanted = getenv("LANG");
	const char *locale = setlocale(LC_ALL, "");
	if (locale != NULL)
		printf("locale: %s accepted (codeset %s)\n", locale, nl_langinfo(CODESET));
	else
		printf("locale: %s not accepted\n", wanted != NULL ? wanted : "(unset)");
	return 0;
}
