/* Typed access to the HAKMEM_* variables of config_table.h. Values are
 * read once, at initialisation, and never change afterwards, so readers
 * need no synchronisation. */
#ifndef HAKMEM_CONFIG_H
#define HAKMEM_CONFIG_H

#include <stdbool.h>

#include "config_table.h"

enum hak_cfg_type {
    HAK_T_BOOL,
    HAK_T_INT,
    HAK_T_SIZE,
    HAK_T_DOUBLE,
    HAK_T_ENUM,
    HAK_T_LIST,
    HAK_T_STRING,
    HAK_T_REMOVED,
};

/* clang-format off */
enum hak_cfg_id {
#define HAK_CFG_ENUM_ID(id, ...) HAK_CFG_##id,
    HAK_CONFIG_TABLE(HAK_CFG_ENUM_ID)
#undef HAK_CFG_ENUM_ID
    HAK_CFG_COUNT
};
/* clang-format on */

/* Where a value came from. */
enum hak_cfg_source {
    HAK_SRC_DEFAULT = 0, /* the table's default ("" = unset) */
    HAK_SRC_MODE = 1,    /* set by HAKMEM_MODE or HAKMEM_TINY_MEM_DIET */
    HAK_SRC_ENV = 2,     /* the user's environment */
};

/* Reason codes of the config_rejected probe. */
enum hak_cfg_reject {
    HAK_REJECT_SYNTAX = 0,       /* not a number / malformed list */
    HAK_REJECT_RANGE = 1,        /* outside [min, max] */
    HAK_REJECT_WORD = 2,         /* not one of the enum words */
    HAK_REJECT_REMOVED = 3,      /* a removed variable */
    HAK_REJECT_INCONSISTENT = 4, /* conflicts with another variable */
    HAK_REJECT_BUILD_FLAG = 5,   /* a build-time switch set in the environment */
};

#define HAK_CFG_LIST_MAX 16

/* Parse the environment (never allocates) and apply modes. */
void hak_config_load(void);

bool hak_cfg_is_set(enum hak_cfg_id id); /* has a value (not "unset") */
enum hak_cfg_source hak_cfg_source(enum hak_cfg_id id);
long long hak_cfg_int(enum hak_cfg_id id); /* BOOL, INT, SIZE; enum index for ENUM */
double hak_cfg_double(enum hak_cfg_id id);
const char *hak_cfg_str(enum hak_cfg_id id); /* STRING; "" when unset */
int hak_cfg_list(enum hak_cfg_id id, const long long **items);

/* Number of values rejected at start-up. */
unsigned hak_config_rejected_count(void);

/* HAKMEM_MODE words, in table order. */
enum hak_mode { HAK_MODE_MINIMAL, HAK_MODE_FAST, HAK_MODE_BALANCED, HAK_MODE_LEARNING, HAK_MODE_RESEARCH };
enum hak_thp { HAK_THP_OFF, HAK_THP_AUTO, HAK_THP_ON };
enum hak_profile { HAK_PROFILE_CONSERVATIVE, HAK_PROFILE_HOT, HAK_PROFILE_OFF, HAK_PROFILE_FULL };
enum hak_free_policy { HAK_FREE_BATCH, HAK_FREE_KEEP, HAK_FREE_ADAPTIVE };

#endif
