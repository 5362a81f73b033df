// A C++ program: std::string, iostream and an exception, so it needs
// libstdc++ and libgcc_s at run time.
#include <iostream>
#include <stdexcept>
#include <string>

int main() {
    try {
        throw std::runtime_error("caught");
    } catch (const std::exception &e) {
        std::cout << "hello from C++ (" << std::string(e.what()) << ")" << std::endl;
    }
    return 0;
}
