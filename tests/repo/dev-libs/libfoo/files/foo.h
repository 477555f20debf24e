/* libfoo: a test fixture of the Staves project. */
#ifndef FOO_H
#define FOO_H

/* The word libfoo gives its users ("staves"). */
const char *foo_word(void);

#endif
