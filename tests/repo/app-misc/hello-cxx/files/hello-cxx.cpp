// hello-cxx: a test fixture of the Staves project. Throwing and catching an exception needs the C++ runtime
// (libstdc++.so.6) and gcc's unwinder (libgcc_s.so.1) at run time; Staves copies them (stdlib = true).
#include <iostream>
#include <stdexcept>

[[gnu::noinline]] static void greet()
{
	throw std::runtime_error("Hello from C++");
}

int main()
{
	try {
		greet();
	} catch (const std::exception &e) {
		std::cout << e.what() << '\n';
		return 0;
	}
	return 1;
}
