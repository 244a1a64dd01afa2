// The C++ wrapper from an installed vx.
#include <vx.hpp>
#include <iostream>

int main() {
    vx::Client client("memory:");
    vx::Key key{};
    key[0] = 7;
    vx::Index index = client.create_index("consumer", key);
    index.upsert({"near", "far"}, {1, 0, 10, 10}, 2);
    vx::Results r = index.query({1.1f, 0}, 2, vx::QueryOptions{}.top_k(1));
    std::cout << "vx " << vx::version() << " (C++): nearest is " << r.id(0, 0) << "\n";
    try {
        client.load_index("consumer", vx::Key{});
        return 1;
    } catch (const vx::Error &e) {
        if (e.code() != VX_STATUS_WRONG_KEY) return 1;
    }
    return r.id(0, 0) == "near" ? 0 : 1;
}
