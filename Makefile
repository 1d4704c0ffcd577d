# hakmem — build, install, test and benchmark.
#
# Switches (see README.md, "Build switches"):
#   USDT=0        compile every probe out                  (HAKMEM_USDT=0)
#   STATS=1       in-process fast-path counters             (HAKMEM_ENABLE_STATS)
#   DEBUG=1       -O0 -g, internal assertions               (HAKMEM_BUILD_DEBUG=1, HAKMEM_BUILD_RELEASE=0)
#   COUNTERS=1    slow-path debug counters dumped at exit   (HAKMEM_DEBUG_COUNTERS=1)
#   SAN=address|undefined|thread   sanitizer build of the test programs (library built in)
#   BUILD=dir     output folder (default build)
# The default build is the release build with probes in.

USDT     ?= 1
STATS    ?= 0
DEBUG    ?= 0
COUNTERS ?= 0
SAN      ?=
PREFIX   ?= /usr/local
BUILD    ?= build

CC       ?= gcc
CXX      ?= g++
PYTHON   ?= /usr/bin/python3

WARN     := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes
CSTD     := -std=gnu11
# Probe arguments in registers: the default constraint lets globals become
# "-8@sym(%rip)", which libbpf refuses and bpftrace reads as garbage.
SDTFLAGS := -DSTAP_SDT_ARG_CONSTRAINT=nr

ifeq ($(DEBUG),1)
  OPT := -O0 -g3 -DHAKMEM_BUILD_DEBUG=1 -DHAKMEM_BUILD_RELEASE=0
else
  OPT := -O2 -g -DHAKMEM_BUILD_RELEASE=1 -DNDEBUG
endif

DEFS := -DHAKMEM_USDT=$(USDT) -DHAKMEM_DEBUG_COUNTERS=$(COUNTERS) -D_GNU_SOURCE
ifeq ($(STATS),1)
  DEFS += -DHAKMEM_ENABLE_STATS=1
endif

LIB_CFLAGS := $(CSTD) $(WARN) $(OPT) $(DEFS) $(SDTFLAGS) -fPIC -fvisibility=hidden \
              -ftls-model=initial-exec -fno-plt -fno-semantic-interposition \
              -fexceptions -Iinclude -Isrc $(EXTRA_CFLAGS)
LIB_LDFLAGS := -shared -Wl,-z,now -Wl,-z,relro -Wl,--version-script=src/hakmem.map \
               -Wl,-soname,libhakmem.so -pthread

ifneq ($(SAN),)
  SANFLAGS := -fsanitize=$(SAN) -fno-omit-frame-pointer
endif

LIB_SRCS := $(sort $(wildcard src/*.c))
LIB_OBJS := $(patsubst src/%.c,$(BUILD)/obj/%.o,$(LIB_SRCS))
LIB_DEPS := $(LIB_OBJS:.o=.d)

TEST_C_SRCS   := $(sort $(wildcard tests/c/*.c))
TEST_CXX_SRCS := $(sort $(wildcard tests/c/*.cc))
TEST_BINS     := $(patsubst tests/c/%.c,$(BUILD)/tests/%,$(TEST_C_SRCS)) \
                 $(patsubst tests/c/%.cc,$(BUILD)/tests/%,$(TEST_CXX_SRCS))
BENCH_SRCS    := $(sort $(wildcard bench/*.c))
BENCH_BINS    := $(patsubst bench/%.c,$(BUILD)/bench/bin/%,$(BENCH_SRCS))
TOOL_SRCS     := $(sort $(wildcard tools/*.c))

.PHONY: all lib install uninstall test test-build bench bench-build bench-quick bench-instr bench-probes bench-fronts \
        clean format format-check deps docs check-docs

all: lib $(BUILD)/hakmem-config $(BUILD)/hakmem

lib: $(BUILD)/libhakmem.so $(BUILD)/libhakmem.a

$(BUILD)/obj/%.o: src/%.c Makefile
	@mkdir -p $(dir $@)
	$(CC) $(LIB_CFLAGS) -MMD -MP -c $< -o $@

$(BUILD)/libhakmem.so: $(LIB_OBJS) src/hakmem.map
	$(CC) $(LIB_CFLAGS) $(LIB_OBJS) $(LIB_LDFLAGS) -o $@

$(BUILD)/libhakmem.a: $(LIB_OBJS)
	@rm -f $@
	ar rcs $@ $(LIB_OBJS)

# `hakmem-config` prints the configuration table (the reference in docs/CONFIG.md
# is generated from it, and a test checks they agree).
$(BUILD)/hakmem-config: tools/hakmem_config.c $(BUILD)/libhakmem.so include/hakmem.h
	$(CC) $(CSTD) $(WARN) -O2 -g -Iinclude $< -o $@ -L$(BUILD) -lhakmem -Wl,-rpath,'$$ORIGIN'

# `hakmem` is the command line tool (`hakmem trace`); it does not link the library.
$(BUILD)/hakmem: tools/hakmem.c
	@mkdir -p $(BUILD)
	$(CC) $(CSTD) $(WARN) -O2 -g $< -o $@

-include $(LIB_DEPS)

# ---- tests ---------------------------------------------------------------
TEST_CFLAGS := $(CSTD) $(filter-out -Wmissing-prototypes -Wstrict-prototypes,$(WARN)) -O1 -g -pthread -Iinclude $(SANFLAGS) -Wno-alloc-size-larger-than -fno-builtin
TEST_CXXFLAGS := -std=gnu++17 -Wall -Wextra -Werror -O1 -g -pthread -Iinclude $(SANFLAGS) -fno-builtin -Wno-alloc-size-larger-than -fsized-deallocation -faligned-new

$(BUILD)/tests/%: tests/c/%.c | lib
	@mkdir -p $(dir $@)
	$(CC) $(TEST_CFLAGS) $< -o $@ -ldl

$(BUILD)/tests/%: tests/c/%.cc | lib
	@mkdir -p $(dir $@)
	$(CXX) $(TEST_CXXFLAGS) $< -o $@ -ldl

test-build: all $(TEST_BINS)

# The whole suite. Its last line is pytest's summary; it exits non-zero on any failure.
test: deps test-build
	$(PYTHON) -m pytest -q -rs -p no:cacheprovider tests

deps:
	@scripts/deps.sh

# ---- benchmarks ----------------------------------------------------------
# bench/run.py reads build/bench/bin: the bench targets use the default BUILD.
# BENCH_ARGS passes options through, e.g. BENCH_ARGS='--workloads larson --runs 9'.
BENCH_CFLAGS := $(CSTD) -Wall -Wextra -Werror -O2 -g -pthread -fno-builtin -Wno-alloc-size-larger-than

$(BUILD)/bench/bin/%: bench/%.c $(wildcard bench/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(BENCH_CFLAGS) $< -o $@ -lm

bench-build: lib $(BENCH_BINS)

bench: deps bench-build
	$(PYTHON) bench/run.py --full $(BENCH_ARGS)
	$(MAKE) -s bench-fronts

# The Tiny tier's A/B fronts against the default (SLL) front.
FRONTS = hakmem,hakmem-mag,hakmem-quick,hakmem-fastcache
bench-fronts: deps bench-build
	$(PYTHON) bench/run.py --quick --runs 3 --scale 0.3 --allocs $(FRONTS) \
		--workloads tiny_hot,tiny_bands,mixed_small,xthread_prodcons,larson --out build/bench/fronts
	$(PYTHON) bench/run.py --instr --allocs $(FRONTS) --out build/bench/fronts

bench-quick: deps bench-build
	$(PYTHON) bench/run.py --quick $(BENCH_ARGS)

bench-instr: deps bench-build
	$(PYTHON) bench/run.py --instr $(BENCH_ARGS)

bench-probes: deps bench-build
	$(PYTHON) bench/run.py --probes $(BENCH_ARGS)

# ---- install -------------------------------------------------------------
install: lib
	install -d $(DESTDIR)$(PREFIX)/lib $(DESTDIR)$(PREFIX)/include $(DESTDIR)$(PREFIX)/lib/pkgconfig
	install -m 0755 $(BUILD)/libhakmem.so $(DESTDIR)$(PREFIX)/lib/libhakmem.so
	install -m 0644 $(BUILD)/libhakmem.a $(DESTDIR)$(PREFIX)/lib/libhakmem.a
	install -m 0644 include/hakmem.h $(DESTDIR)$(PREFIX)/include/hakmem.h
	sed -e 's|@PREFIX@|$(PREFIX)|g' scripts/hakmem.pc.in > $(DESTDIR)$(PREFIX)/lib/pkgconfig/hakmem.pc

uninstall:
	rm -f $(DESTDIR)$(PREFIX)/lib/libhakmem.so $(DESTDIR)$(PREFIX)/lib/libhakmem.a \
	      $(DESTDIR)$(PREFIX)/include/hakmem.h $(DESTDIR)$(PREFIX)/lib/pkgconfig/hakmem.pc

# ---- docs and style ------------------------------------------------------
docs: $(BUILD)/hakmem-config
	$(BUILD)/hakmem-config --markdown > docs/CONFIG.md

format:
	clang-format -i src/*.c src/*.h include/*.h tools/*.c tests/c/*.c tests/c/*.cc bench/*.c bench/*.h

format-check:
	clang-format --dry-run --Werror src/*.c src/*.h include/*.h tools/*.c tests/c/*.c tests/c/*.cc bench/*.c bench/*.h

clean:
	rm -rf $(BUILD) build-*
