// The header from C++17: RAII ownership of handles, std::string keys,
// std::thread, and the result enum as a C++ type.
#include <atomic>
#include <cctype>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "check.h"
#include "tierstack.h"

namespace {

struct CacheFree {
    void operator()(tierstack_cache *c) const { tierstack_cache_free(c); }
};
struct ValueFree {
    void operator()(tierstack_value *v) const { tierstack_value_free(v); }
};
struct StringFree {
    void operator()(char *s) const { tierstack_string_free(s); }
};
using Cache = std::unique_ptr<tierstack_cache, CacheFree>;
using Value = std::unique_ptr<tierstack_value, ValueFree>;
using String = std::unique_ptr<char, StringFree>;

tierstack_result set(const Cache &cache, std::string_view key, std::string_view value) {
    return tierstack_cache_set(cache.get(), key.data(), key.size(),
                               reinterpret_cast<const uint8_t *>(value.data()), value.size(), 0);
}

std::optional<std::string> get(const Cache &cache, std::string_view key) {
    tierstack_value *raw = nullptr;
    if (tierstack_cache_get(cache.get(), key.data(), key.size(), &raw) != TIERSTACK_RESULT_OK) {
        return std::nullopt;
    }
    Value value(raw);
    if (!value) {
        return std::nullopt;
    }
    return std::string(reinterpret_cast<const char *>(tierstack_value_data(value.get())),
                       tierstack_value_len(value.get()));
}

// A cache on a file in a new temporary directory, removed with it.
struct TempCache {
    char *dir = tmp_dir_new();
    Cache cache = open();

    Cache open() const {
        std::unique_ptr<char, decltype(&free)> config(config_in(dir, ""), &free);
        tierstack_cache *raw = nullptr;
        CHECK_OK(tierstack_cache_open(config.get(), &raw));
        return Cache(raw);
    }
    ~TempCache() {
        cache.reset();
        tmp_dir_remove(dir);
    }
};

void test_raii_round_trip() {
    TempCache temp;
    const Cache &cache = temp.cache;
    std::string key = "component:button";
    CHECK_OK(set(cache, key, "export const Button = 1;"));
    CHECK(get(cache, key) == std::optional<std::string>("export const Button = 1;"));
    CHECK(get(cache, "missing") == std::nullopt);

    tierstack_result r = set(cache, "", "x");
    CHECK(r == TIERSTACK_RESULT_INVALID_KEY);
    CHECK(std::string(tierstack_result_name(r)) == "invalid_key");

    char *keys = nullptr;
    CHECK_OK(tierstack_cache_keys_json(cache.get(), "component:*", 11, &keys));
    String owned(keys);
    CHECK(std::string(owned.get()) == "[\"component:button\"]");
}

void test_threads() {
    TempCache temp;
    const Cache &cache = temp.cache;
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; t++) {
        threads.emplace_back([&cache, t] {
            for (int i = 0; i < 50; i++) {
                std::string key = "t" + std::to_string(t) + ":" + std::to_string(i);
                CHECK_OK(set(cache, key, key + "=value"));
                CHECK(get(cache, key) == key + "=value");
            }
        });
    }
    for (auto &thread : threads) {
        thread.join();
    }
    uint64_t n = 0;
    CHECK_OK(tierstack_cache_len(cache.get(), &n));
    CHECK(n == 200);
}

// A plain function as the loader (no lambda): C++ code passes the same
// function pointer type C does.
extern "C" tierstack_result upper_loader(void *user_data, const char *key, size_t key_len,
                                         tierstack_load *load) {
    static_cast<std::atomic<int> *>(user_data)->fetch_add(1);
    std::string value(key, key_len);
    for (char &c : value) {
        c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    }
    return tierstack_load_value(load, reinterpret_cast<const uint8_t *>(value.data()),
                                value.size(), 0);
}

void test_get_or_load() {
    TempCache temp;
    const Cache &cache = temp.cache;
    std::atomic<int> calls{0};
    for (int i = 0; i < 3; i++) {
        tierstack_value *raw = nullptr;
        CHECK_OK(tierstack_cache_get_or_load(cache.get(), "button", 6, upper_loader, &calls, 0,
                                             &raw));
        Value value(raw);
        CHECK(value && std::string(reinterpret_cast<const char *>(tierstack_value_data(value.get())),
                                   tierstack_value_len(value.get())) == "BUTTON");
        CHECK(value && std::string(tierstack_value_tier(value.get())) ==
                           (i == 0 ? "source" : "memory"));
    }
    CHECK(calls.load() == 1);
    tierstack_result r = tierstack_cache_get_or_load(cache.get(), "x", 1, nullptr, nullptr, 0,
                                                     nullptr);
    CHECK(r == TIERSTACK_RESULT_INVALID_ARGUMENT);
}

}  // namespace

int main() {
    check_case("C++: RAII handles, string keys, the result enum", test_raii_round_trip);
    check_case("C++: std::thread writers on one handle", test_threads);
    check_case("C++: get_or_load with a function pointer", test_get_or_load);
    return check_summary();
}
