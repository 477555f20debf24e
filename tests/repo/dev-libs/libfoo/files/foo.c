/* libfoo: a test fixture of the Staves project (SONAME libfoo.so.1). */
#include "foo.h"

const char *foo_word(void)
{
	return "staves";
}
