// cudasim's stand-in for dali/core/static_switch.h: TYPE_SWITCH and VALUE_SWITCH with DALI's
// interface and semantics, written without Boost.Preprocessor (up to 12 cases per switch).
//
//   TYPE_SWITCH(id, type2id, T, (float16, float), (code using T), (code when no type matches))
//
// Parenthesized types, case code and default code may contain commas; switches nest.
#pragma once

#define CUDASIM_PP_CAT_(a, b) a##b
#define CUDASIM_PP_CAT(a, b) CUDASIM_PP_CAT_(a, b)
// Removes one level of parentheses if there is one: (a, b) -> a, b; a -> a.
#define CUDASIM_PP_ISH(...) CUDASIM_PP_ISH __VA_ARGS__
#define CUDASIM_PP_ESC(...) CUDASIM_PP_ESC_(__VA_ARGS__)
#define CUDASIM_PP_ESC_(...) CUDASIM_PP_VAN##__VA_ARGS__
#define CUDASIM_PP_VANCUDASIM_PP_ISH
#define CUDASIM_PP_REMOVE_PARENS(x) CUDASIM_PP_ESC(CUDASIM_PP_ISH x)
#define CUDASIM_PP_EXPAND(...) __VA_ARGS__
#define CUDASIM_PP_UNWRAP(x) CUDASIM_PP_EXPAND x

#define CUDASIM_PP_NARGS_(_1, _2, _3, _4, _5, _6, _7, _8, _9, _10, _11, _12, N, ...) N
#define CUDASIM_PP_NARGS(...) CUDASIM_PP_NARGS_(__VA_ARGS__, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0)

// m(ctx, x) for each x.
#define CUDASIM_PP_EACH_1(m, c, x) m(c, x)
#define CUDASIM_PP_EACH_2(m, c, x, ...) m(c, x) CUDASIM_PP_EACH_1(m, c, __VA_ARGS__)
#define CUDASIM_PP_EACH_3(m, c, x, ...) m(c, x) CUDASIM_PP_EACH_2(m, c, __VA_ARGS__)
#define CUDASIM_PP_EACH_4(m, c, x, ...) m(c, x) CUDASIM_PP_EACH_3(m, c, __VA_ARGS__)
#define CUDASIM_PP_EACH_5(m, c, x, ...) m(c, x) CUDASIM_PP_EACH_4(m, c, __VA_ARGS__)
#define CUDASIM_PP_EACH_6(m, c, x, ...) m(c, x) CUDASIM_PP_EACH_5(m, c, __VA_ARGS__)
#define CUDASIM_PP_EACH_7(m, c, x, ...) m(c, x) CUDASIM_PP_EACH_6(m, c, __VA_ARGS__)
#define CUDASIM_PP_EACH_8(m, c, x, ...) m(c, x) CUDASIM_PP_EACH_7(m, c, __VA_ARGS__)
#define CUDASIM_PP_EACH_9(m, c, x, ...) m(c, x) CUDASIM_PP_EACH_8(m, c, __VA_ARGS__)
#define CUDASIM_PP_EACH_10(m, c, x, ...) m(c, x) CUDASIM_PP_EACH_9(m, c, __VA_ARGS__)
#define CUDASIM_PP_EACH_11(m, c, x, ...) m(c, x) CUDASIM_PP_EACH_10(m, c, __VA_ARGS__)
#define CUDASIM_PP_EACH_12(m, c, x, ...) m(c, x) CUDASIM_PP_EACH_11(m, c, __VA_ARGS__)
#define CUDASIM_PP_FOR_EACH(m, c, ...) \
  CUDASIM_PP_CAT(CUDASIM_PP_EACH_, CUDASIM_PP_NARGS(__VA_ARGS__))(m, c, __VA_ARGS__)

#define CUDASIM_TYPE_CASE_(type_tag_, type_name_, code_, type_)      \
  case type_tag_<CUDASIM_PP_REMOVE_PARENS(type_)>::value: {          \
    using type_name_ = CUDASIM_PP_REMOVE_PARENS(type_);              \
    CUDASIM_PP_REMOVE_PARENS(code_);                                 \
  } break;
#define CUDASIM_TYPE_CASE_2(...) CUDASIM_TYPE_CASE_(__VA_ARGS__)
#define CUDASIM_TYPE_CASE(ctx, type_) CUDASIM_TYPE_CASE_2(CUDASIM_PP_UNWRAP(ctx), type_)

#define TYPE_SWITCH(id_, type_tag_, type_name_, types, case_, default_)                                     \
  switch (id_) {                                                                                            \
    CUDASIM_PP_FOR_EACH(CUDASIM_TYPE_CASE, (type_tag_, type_name_, case_), CUDASIM_PP_REMOVE_PARENS(types)) \
    default: {                                                                                              \
      CUDASIM_PP_REMOVE_PARENS(default_);                                                                   \
    }                                                                                                       \
  }

#define CUDASIM_VALUE_CASE_(value_name_, code_, value_) \
  case value_: {                                        \
    constexpr auto value_name_ = value_;                \
    CUDASIM_PP_REMOVE_PARENS(code_);                    \
  } break;
#define CUDASIM_VALUE_CASE_2(...) CUDASIM_VALUE_CASE_(__VA_ARGS__)
#define CUDASIM_VALUE_CASE(ctx, value_) CUDASIM_VALUE_CASE_2(CUDASIM_PP_UNWRAP(ctx), value_)

#define VALUE_SWITCH(value_, value_name_, values, case_, default_)                                       \
  switch (value_) {                                                                                      \
    CUDASIM_PP_FOR_EACH(CUDASIM_VALUE_CASE, (value_name_, case_), CUDASIM_PP_REMOVE_PARENS(values))      \
    default: {                                                                                           \
      CUDASIM_PP_REMOVE_PARENS(default_);                                                                \
    }                                                                                                    \
  }
