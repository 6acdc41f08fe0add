# Test registration. Unit tests are cmocka executables, one per file under
# tests/unit/<subsys>/test_<name>.c, found by glob so adding a file is enough.
pkg_check_modules(CMOCKA REQUIRED IMPORTED_TARGET cmocka)
# The routes test reads the API's answers with a JSON parser that is not the library's own.
pkg_check_modules(JANSSON REQUIRED IMPORTED_TARGET jansson)
find_program(VH_PYTHON python3 REQUIRED)

set(VH_TEST_ENV
    VOCOHOOK=$<TARGET_FILE:vocohook>
    VH_SOURCE_DIR=${PROJECT_SOURCE_DIR}
    VH_BINARY_DIR=${PROJECT_BINARY_DIR}
    VH_PYTHON=${VH_PYTHON}
    PYTHONDONTWRITEBYTECODE=1)

function(vh_add_unit_test path)
    string(REPLACE "/" "_" name "${path}")
    get_filename_component(dir ${path} DIRECTORY)
    get_filename_component(base ${path} NAME)
    set(exe unit_${name})
    add_executable(${exe} ${PROJECT_SOURCE_DIR}/tests/unit/${dir}/test_${base}.c)
    target_include_directories(${exe} PRIVATE ${PROJECT_SOURCE_DIR}/src
                               ${PROJECT_SOURCE_DIR}/tests)
    target_link_libraries(${exe} PRIVATE vocohook_static PkgConfig::CMOCKA)
    vh_set_test_warnings(${exe})
    add_test(NAME unit/${path} COMMAND ${exe})
    set_tests_properties(unit/${path} PROPERTIES
        ENVIRONMENT "VH_SOURCE_DIR=${PROJECT_SOURCE_DIR};VH_BINARY_DIR=${PROJECT_BINARY_DIR}"
        TIMEOUT 300)
endfunction()

file(GLOB VH_UNIT_TESTS CONFIGURE_DEPENDS ${PROJECT_SOURCE_DIR}/tests/unit/*/test_*.c)
foreach(src ${VH_UNIT_TESTS})
    get_filename_component(dir ${src} DIRECTORY)
    get_filename_component(subsys ${dir} NAME)
    get_filename_component(base ${src} NAME_WE)
    string(REGEX REPLACE "^test_" "" base ${base})
    vh_add_unit_test(${subsys}/${base})
endforeach()
target_link_libraries(unit_http_routes PRIVATE PkgConfig::JANSSON)
# unit/core/jtree reads reals under other LC_NUMERIC locales, compiled first into the build
# tree (a fresh Debian has none but C.UTF-8).
add_test(NAME unit/core/jtree-locales
         COMMAND bash ${PROJECT_SOURCE_DIR}/scripts/make-test-locales ${PROJECT_BINARY_DIR}/locales)
set_tests_properties(unit/core/jtree-locales PROPERTIES FIXTURES_SETUP jtree_locales)
set_tests_properties(unit/core/jtree PROPERTIES FIXTURES_REQUIRED jtree_locales
    ENVIRONMENT "VH_SOURCE_DIR=${PROJECT_SOURCE_DIR};VH_BINARY_DIR=${PROJECT_BINARY_DIR};LOCPATH=${PROJECT_BINARY_DIR}/locales;LSAN_OPTIONS=suppressions=${PROJECT_SOURCE_DIR}/tests/lsan-locale.supp")

# The store contract suites again on PostgreSQL (STYLE.md §10), plus the PostgreSQL-only
# tests (which have no SQLite run: unit/store/postgres skips every test by itself). Whether
# a server is there is decided when the tests run, not at configure time: scripts/pg-fresh-db
# --run gives each program a new database next to $VH_TEST_PG_URL (set by
# scripts/with-postgres), or exits 77 (skipped) when that is unset.
foreach(path store/store store/deliveries store/postgres)
    string(REPLACE "/" "_" name "${path}")
    add_test(NAME unit/${path}@postgres
             COMMAND bash ${PROJECT_SOURCE_DIR}/scripts/pg-fresh-db --run
                     $<TARGET_FILE:unit_${name}>)
    set_tests_properties(unit/${path}@postgres PROPERTIES
        ENVIRONMENT "VH_SOURCE_DIR=${PROJECT_SOURCE_DIR};VH_BINARY_DIR=${PROJECT_BINARY_DIR}"
        SKIP_RETURN_CODE 77
        TIMEOUT 300)
endforeach()

# Integration tests: scripts (bash or python) driving the real binary.
file(GLOB VH_INTEGRATION_TESTS CONFIGURE_DEPENDS
     ${PROJECT_SOURCE_DIR}/tests/integration/test_*.sh
     ${PROJECT_SOURCE_DIR}/tests/integration/test_*.py)
foreach(src ${VH_INTEGRATION_TESTS})
    get_filename_component(name ${src} NAME_WE)
    get_filename_component(ext ${src} EXT)
    if(ext STREQUAL ".py")
        add_test(NAME integration/${name} COMMAND ${VH_PYTHON} ${src})
    else()
        add_test(NAME integration/${name} COMMAND bash ${src})
    endif()
    set_tests_properties(integration/${name} PROPERTIES ENVIRONMENT "${VH_TEST_ENV}"
                         TIMEOUT 600)
endforeach()

# Fuzz corpora replay through the same entry points, built with the normal compiler.
foreach(src ${VH_FUZZ_SOURCES})
    get_filename_component(name ${src} NAME_WE)
    string(REGEX REPLACE "^fuzz_" "" target ${name})
    add_executable(replay_${target} ${src} ${PROJECT_SOURCE_DIR}/fuzz/replay.c)
    target_include_directories(replay_${target} PRIVATE ${PROJECT_SOURCE_DIR}/src)
    target_link_libraries(replay_${target} PRIVATE vocohook_static)
    vh_set_test_warnings(replay_${target})
    add_test(NAME fuzz/${target}
             COMMAND replay_${target} ${PROJECT_SOURCE_DIR}/fuzz/corpus/${target})
endforeach()

# Build-level checks: exported symbols, header self-containment, the one-place header rule.
add_test(NAME checks/exports
         COMMAND bash ${PROJECT_SOURCE_DIR}/scripts/check-exports $<TARGET_FILE:vocohook_shared>)
add_test(NAME checks/headers
         COMMAND bash ${PROJECT_SOURCE_DIR}/scripts/check-headers ${CMAKE_C_COMPILER})
set_tests_properties(checks/headers PROPERTIES ENVIRONMENT "VH_SOURCE_DIR=${PROJECT_SOURCE_DIR}")
